"""The one exception tree of dagnats. Every message names the ids involved and says what to do.

    DagnatsError                    exit 1
    ├── InvalidDefinition           exit 2  a workflow definition is malformed or inconsistent
    ├── InvalidInput                exit 2  a run input, argument or file the user gave is unusable
    │   └── PayloadTooLarge         exit 2  a run input over the payload limit (32 MB)
    ├── WorkflowNotFound            exit 2  no workflow registered under that name (or version)
    ├── RunNotFound                 exit 2  no run with that id (or the prefix is ambiguous)
    ├── DeadLetterNotFound          exit 2  no dead letter at that sequence (replayed, discarded)
    ├── RunNotResumable             exit 1  retry/replay of a run that is not failed or cancelled
    ├── NotWaiting                  exit 2  a decision for a step that is not waiting for one
    ├── RunEnded                    exit 2  a signal to a run that has ended (it takes no more)
    ├── RunNotEnded                 exit 1  a delete of a run that is still running
    ├── Contended                   exit 1  what it would change kept changing meanwhile: retry
    ├── RegistrationError           exit 2  a worker handler was refused (dagnats.worker)
    ├── ServerUnavailable           exit 3  NATS or the dagnats API cannot be reached
    └── ServeError                  exit 3  `dagnats serve` cannot start
        ├── PortInUse                       a port it needs is taken
        ├── AlreadyRunning                  another serve holds the data dir
        └── NatsServerNotFound              no usable nats-server binary

The CLI maps this tree to exit codes through `exit_code`, in one place (`dagnats.cli`).
"""

from __future__ import annotations


class DagnatsError(Exception):
    """Base of every error dagnats raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        """The error as the API sends it: its class name and message."""
        return {"type": type(self).__name__, "message": self.message}


class InvalidDefinition(DagnatsError):
    """A workflow definition is malformed, has a cycle, or names unknown steps."""

    exit_code = 2


class InvalidInput(DagnatsError):
    """Something the user passed (run input, an argument, a file) cannot be used."""

    exit_code = 2


class PayloadTooLarge(InvalidInput):
    """A value over `dagnats.limits.PAYLOAD_MAX_BYTES` (a run input): nothing is started."""


class WorkflowNotFound(DagnatsError):
    """No workflow is registered under the name (or version) asked for."""

    exit_code = 2


class RunNotFound(DagnatsError):
    """No run has the id asked for, or a prefix matches several runs."""

    exit_code = 2


class DeadLetterNotFound(DagnatsError):
    """No dead letter is kept at the sequence asked for (never was, replayed or discarded)."""

    exit_code = 2


class RunNotResumable(DagnatsError):
    """A retry or dead-letter replay asked for a run that has not failed or been cancelled."""

    exit_code = 1


class NotWaiting(DagnatsError):
    """An approval or rejection for a step that is not waiting for one (decided already,
    not an approval step, or its run has ended)."""

    exit_code = 2


class RunEnded(DagnatsError):
    """A run that has ended (completed, failed, cancelled...) was asked to take a signal."""

    exit_code = 2


class RunNotEnded(DagnatsError):
    """A delete asked for a run still running (or compensating): only ended runs are
    deleted."""


class Contended(DagnatsError):
    """What a request would change kept changing under it (a run's history, a key) for
    every one of its tries; nothing was written, and trying again is safe."""


class ServerUnavailable(DagnatsError):
    """NATS, or the dagnats API behind it, cannot be reached."""

    exit_code = 3


class ServeError(DagnatsError):
    """`dagnats serve` cannot start."""

    exit_code = 3


class PortInUse(ServeError):
    """A port serve needs is already taken by another process."""


class AlreadyRunning(ServeError):
    """Another `dagnats serve` already uses the data dir."""


class NatsServerNotFound(ServeError):
    """No usable nats-server binary was found."""


WIRE_ERRORS: dict[str, type[DagnatsError]] = {
    cls.__name__: cls
    for cls in (
        DagnatsError, InvalidDefinition, InvalidInput, WorkflowNotFound, RunNotFound,
        DeadLetterNotFound, RunNotResumable, NotWaiting, RunEnded, RunNotEnded, Contended,
        ServerUnavailable, PayloadTooLarge,
    )
}


def from_wire(payload: dict[str, str]) -> DagnatsError:
    """Rebuild an error sent by the API (`DagnatsError.to_wire`) as the right class."""
    cls = WIRE_ERRORS.get(payload.get("type", ""), DagnatsError)
    return cls(payload.get("message", "unknown error"))
