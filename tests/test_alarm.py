"""The promoter's alarm: rings once at the instant last set, from a thread, on the loop."""

from __future__ import annotations

import asyncio
import math
import time

from adelayed._alarm import Alarm


async def test_the_alarm_rings_once_at_the_last_instant_set_and_not_after_close() -> None:
    loop = asyncio.get_running_loop()
    rings: list[float] = []
    alarm = Alarm(loop, lambda: rings.append(time.monotonic()), "test")
    try:
        start = time.monotonic()
        alarm.set(start + 10)  # replaced before it is due
        alarm.set(start + 0.05)
        await asyncio.sleep(0.2)
        assert len(rings) == 1 and 0.05 <= rings[0] - start < 0.15
        alarm.set(math.inf)  # never
        await asyncio.sleep(0.1)
        assert len(rings) == 1
    finally:
        alarm.close()
    alarm.set(time.monotonic())  # closed: no more rings
    await asyncio.sleep(0.1)
    assert len(rings) == 1
