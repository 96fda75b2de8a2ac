"""adelayed: an asyncio task queue on Redis, wire-compatible with delayed and go-delayed."""

from ._durable import Durable
from ._queue_info import MinuteStats, QueueInfo, WorkerInfo
from .context import NotInTaskError, TaskContext, current_task
from .delay import DelayedFunction, delayed
from .errors import (
    AdelayedError,
    ConfigurationError,
    EnqueueError,
    EnqueueNotDurableError,
    EnqueueOutcomeUnknownError,
    EnqueueTimeoutError,
    FunctionNotAllowedError,
    HookError,
    PayloadError,
    PayloadTooLargeError,
    QueueFullError,
    RedisConfigurationError,
    RemoteTaskError,
    ResultTimeoutError,
    TaskAborted,
    TaskCallError,
    TaskCrashedError,
    TaskDataError,
    TaskError,
    TaskFailed,
    TaskNotFoundError,
    TaskTimeoutError,
    UnsupportedTaskError,
)
from .queue import DeadTask, Queue
from .results import TaskHandle, TaskStatus
from .retry import Backoff, Retry
from .schedules import Cron, Every, ScheduledRun
from .sweeper import Sweeper
from .task import GoTask, PyTask, Task, decode_task
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "AdelayedError",
    "Backoff",
    "ConfigurationError",
    "Cron",
    "DeadTask",
    "DelayedFunction",
    "Durable",
    "EnqueueError",
    "EnqueueNotDurableError",
    "EnqueueOutcomeUnknownError",
    "EnqueueTimeoutError",
    "Every",
    "FunctionNotAllowedError",
    "GoTask",
    "HookError",
    "MinuteStats",
    "NotInTaskError",
    "PayloadError",
    "PayloadTooLargeError",
    "PyTask",
    "Queue",
    "QueueFullError",
    "QueueInfo",
    "RedisConfigurationError",
    "RemoteTaskError",
    "ResultTimeoutError",
    "Retry",
    "ScheduledRun",
    "Sweeper",
    "Task",
    "TaskAborted",
    "TaskCallError",
    "TaskContext",
    "TaskCrashedError",
    "TaskDataError",
    "TaskError",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFoundError",
    "TaskStatus",
    "TaskTimeoutError",
    "UnsupportedTaskError",
    "Worker",
    "WorkerInfo",
    "current_task",
    "decode_task",
    "delayed",
]
