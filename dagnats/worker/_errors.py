"""The worker's exceptions.

    Exception
    ├── NonRetryableError       raise it from a handler: the step fails for good, no retry
    │   ├── InvalidTaskInput    (internal) the input does not fit the handler's annotation
    │   └── InvalidTaskOutput   (internal) the result cannot be serialized as its annotation
    ├── RunCancelled            ctx.wait_for_signal ended: the run was cancelled meanwhile
    └── DagnatsError
        └── RegistrationError   a handler was refused when it was registered
"""

from __future__ import annotations

from dagnats.errors import DagnatsError


class NonRetryableError(Exception):
    """Raise from a handler when retrying cannot help: the step fails without further attempts.

    Any other exception is retryable: the engine retries the step per its retry policy.
    """


class InvalidTaskInput(NonRetryableError):
    """The task input does not validate against the handler's input annotation."""


class InvalidTaskOutput(NonRetryableError):
    """The handler's result cannot be serialized as its return annotation (to JSON)."""


class RunCancelled(Exception):
    """The run was cancelled while the handler waited (`ctx.wait_for_signal`): return now.

    Letting it propagate is fine: nothing a cancelled run's handler returns or raises is
    reported.
    """


class RegistrationError(DagnatsError):
    """A handler was refused at registration: bad task name, duplicate, or unusable signature.

    The message names the task and the handler, and says what to change.
    """

    exit_code = 2
