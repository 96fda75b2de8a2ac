"""``adelayed web``: serves the dashboard (adelayed.web) for the queues named with -q."""

from __future__ import annotations

import logging
import signal

import anyio
import click

from ._cli_options import QueueOptions, with_queue_options
from .errors import ConfigurationError

logger = logging.getLogger(__name__)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to bind")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--token", envvar="ADELAYED_WEB_TOKEN", default=None, show_envvar=True,
    help="required of every request (Basic auth password, or Bearer); needed off loopback",
)  # fmt: skip
@with_queue_options
def web(options: QueueOptions, host: str, port: int, token: str | None) -> int:
    """Serve the dashboard: queues, workers, schedules, tasks, dead letters."""
    try:
        from .web import check_binding
    except ImportError:
        raise ConfigurationError(
            "adelayed web needs aiohttp, of the web extra: pip install 'adelayed[web]'"
        ) from None
    check_binding(host, token)
    return int(anyio.run(_serve, options, host, port, token))


async def _serve(options: QueueOptions, host: str, port: int, token: str | None) -> int:
    from aiohttp import web as aioweb

    from .web import create_app

    client = options.client()
    runner = aioweb.AppRunner(create_app(options.queues_on(client), token))
    await runner.setup()
    try:
        site = aioweb.TCPSite(runner, host, port)
        await site.start()
        logger.warning(
            "adelayed web: serving %s on http://%s:%d/", list(options.queues), host, port
        )
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:  # the first SIGINT or SIGTERM: a clean stop
                break
    finally:
        await runner.cleanup()
        await client.aclose()
    return 0
