"""The worker SDK: register typed task handlers on a Worker and run it.

    from dagnats import worker

    w = worker.Worker()                       # DAGNATS_NATS_URL, else nats://127.0.0.1:4222

    def greet(ctx: worker.TaskContext, name: str) -> str:
        return f"Hello, {name or 'World'}!"

    worker.handle_typed(w, "greet", greet)    # input/output types come from the annotations

    @w.task("uppercase")                      # decorator form, same behaviour
    async def uppercase(ctx: worker.TaskContext, text: str) -> str:
        return text.upper()

    if __name__ == "__main__":
        w.run()                               # SIGINT/SIGTERM: finish tasks in flight, exit

Handlers take `(ctx, input)`. Sync handlers run in a bounded thread pool, async ones on a
handler event loop in a thread of its own; the worker's own loop, which extends leases and
talks to NATS, runs no handler code, so even a handler that blocks is never redelivered
while it runs. Raise NonRetryableError when retrying cannot help; any other exception is
retried by the engine. When a run is cancelled, `ctx.cancelled` turns true and
`await ctx.wait_cancelled()` returns; nothing a cancelled run's handler returns is reported.
Bad handlers are refused at registration with a RegistrationError.

Handlers wait for signals sent to their run (`await ctx.wait_for_signal(name, timeout=...)`,
`ctx.wait_for_signal_sync` in sync handlers) and keep a checkpoint per step across retries
and redeliveries (`ctx.checkpoint(state)`, `ctx.load_checkpoint()`; `await
ctx.acheckpoint(state)`, `await ctx.aload_checkpoint()` in async handlers): docs/handlers.md.
An agent_loop step's handler returns `worker.Continue(state)` to be called again with
`state` (`ctx.iteration` counts the calls); docs/step-types.md.
"""

from dagnats.worker._cancel import CancelSignal
from dagnats.worker._context import TaskContext
from dagnats.worker._errors import NonRetryableError, RegistrationError, RunCancelled
from dagnats.worker._execute import Continue
from dagnats.worker._worker import Worker, handle_typed

__all__ = ["CancelSignal", "Continue", "NonRetryableError", "RegistrationError", "RunCancelled",
           "TaskContext", "Worker", "handle_typed"]
