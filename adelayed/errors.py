"""adelayed's exceptions: one hierarchy, rooted at AdelayedError."""

from __future__ import annotations


class AdelayedError(Exception):
    """The root of every exception adelayed raises on purpose."""


class ConfigurationError(AdelayedError, ValueError):
    """An argument or setting cannot work; the message says which and how to fix it."""


class TaskError(AdelayedError):
    """A task cannot be run as it stands (it goes to the dead-letter list, never lost)."""


class PayloadError(TaskError):
    """A payload read from a queue is not a task of the delayed v1 protocol."""


class FunctionNotAllowedError(TaskError):
    """The worker was not told it may run this function (see ``Worker(tasks=...)``)."""


class TaskCallError(TaskError):
    """The function does not accept the task's arguments (the task is not retried)."""


class UnsupportedTaskError(TaskError):
    """The task is for another runtime (a Go task reached a Python worker)."""


class EnqueueError(AdelayedError):
    """A task could not be enqueued; the message says whether anything was added."""


class QueueFullError(EnqueueError):
    """The queue holds ``max_length`` tasks already; nothing was added."""


class PayloadTooLargeError(PayloadError, EnqueueError):
    """A serialized task is larger than the queue's ``max_payload_size``."""


class TaskDataError(AdelayedError, ValueError):
    """A task's arguments cannot be sent (wrong types, a value a worker could not decode, a
    call its function would refuse); the message names the argument. Nothing was enqueued."""


class EnqueueOutcomeUnknownError(EnqueueError):
    """The task was sent but no reply came (the connection was lost after sending): it may or
    may not have been enqueued. Retrying may enqueue it twice."""


class EnqueueTimeoutError(EnqueueOutcomeUnknownError, TimeoutError):
    """No reply within the queue's ``enqueue_timeout``: the task may or may not have been
    enqueued."""


class EnqueueNotDurableError(EnqueueOutcomeUnknownError):
    """A durable enqueue ran on the primary, but too few replicas acknowledged it in time (or
    the connection was lost before they could be asked): it may be lost in a failover."""


class RedisConfigurationError(ConfigurationError):
    """Redis refuses this client or is set up so that tasks would be lost or run twice (a
    wrong or missing password, an unknown database, a refused ACL, an evicting
    ``maxmemory-policy``). Retrying cannot fix it; the message says what to change."""


class TaskTimeoutError(AdelayedError, TimeoutError):
    """A task ran past its ``timeout``; the attempt failed and goes through its retry policy."""


class HookError(AdelayedError):
    """A worker's hook failed: an ``on_startup`` hook (the worker stops before it takes a
    task) or a ``before_task`` hook (that attempt of that task fails). The message names the
    hook; its exception is the cause."""


class TaskCrashedError(AdelayedError):
    """The child process of a task run with ``isolation="process"`` died (a signal, a
    segfault, the OOM killer) before returning: a failure of that task, not of the worker."""


class RemoteTaskError(AdelayedError):
    """An exception a task raised in another process (``isolation="process"``): carries the
    remote exception's type name, message and traceback text."""

    def __init__(self, type_name: str, message: str, traceback_text: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class TaskFailed(RemoteTaskError):  # noqa: N818 - a result, read as "the task failed"
    """``TaskHandle.result()`` of a task that failed (out of retries) or was dead-lettered
    (``dead``): carries its last error's type name, message and traceback text, as the worker
    saw them."""

    def __init__(
        self, type_name: str, message: str, traceback_text: str, *, task_id: str, dead: bool
    ) -> None:
        super().__init__(type_name, message, traceback_text)
        self.task_id = task_id
        self.dead = dead


class ResultTimeoutError(AdelayedError, TimeoutError):
    """``TaskHandle.result(timeout=...)`` passed its timeout before the task ended."""


class TaskNotFoundError(AdelayedError, LookupError):
    """The queue knows no task of that id: it was not enqueued there with ``keep_result``, or
    its result expired."""


class TaskAborted(AdelayedError):  # noqa: N818 - a result, read as "the task was aborted"
    """``TaskHandle.result()`` of a task that was aborted (``TaskHandle.abort()``)."""
