"""adelayed: an asyncio task queue on Redis, wire-compatible with delayed and go-delayed."""

from .delay import DelayedFunction, delayed
from .errors import (
    AdelayedError,
    ConfigurationError,
    EnqueueError,
    FunctionNotAllowedError,
    PayloadError,
    PayloadTooLargeError,
    QueueFullError,
    TaskCallError,
    TaskError,
    UnsupportedTaskError,
)
from .queue import DeadTask, Queue
from .sweeper import Sweeper
from .task import GoTask, PyTask, Task, decode_task
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AdelayedError",
    "ConfigurationError",
    "DeadTask",
    "DelayedFunction",
    "EnqueueError",
    "FunctionNotAllowedError",
    "GoTask",
    "PayloadError",
    "PayloadTooLargeError",
    "PyTask",
    "Queue",
    "QueueFullError",
    "Sweeper",
    "Task",
    "TaskCallError",
    "TaskError",
    "UnsupportedTaskError",
    "Worker",
    "decode_task",
    "delayed",
]
