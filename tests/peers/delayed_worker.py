"""A worker of the real delayed 1.2 package (PyPI ``delayed==1.2.0b2``), as its README runs one.

Usage: python -m tests.peers.delayed_worker URL QUEUE KEEP_ALIVE_TIMEOUT KEEP_ALIVE_INTERVAL
"""

from __future__ import annotations

import logging
import sys

import redis
from delayed.logger import setup_logger
from delayed.queue import Queue
from delayed.worker import Worker

url, name, timeout, interval = sys.argv[1:5]
setup_logger(logging.DEBUG)
queue = Queue(name, redis.Redis.from_url(url), dequeue_timeout=0.2, keep_alive_timeout=int(timeout))
Worker(queue, keep_alive_interval=float(interval)).run()
