"""The tutorial's worker: greet -> uppercase -> reverse, with typed handlers.

Run it with `bin/dagnats worker run examples/hello-pipeline/worker.py`, or let serve
supervise it: `bin/dagnats serve --worker examples/hello-pipeline/worker.py`.
"""

from dagnats import worker

w = worker.Worker()  # DAGNATS_NATS_URL, else the running local serve, else :4222


def greet(ctx: worker.TaskContext, name: str) -> str:
    """A sync handler: it runs in the worker's thread pool."""
    return f"Hello, {name or 'World'}!"


worker.handle_typed(w, "greet", greet)  # input/output types come from the annotations


@w.task("uppercase")  # decorator form, same behaviour
async def uppercase(ctx: worker.TaskContext, text: str) -> str:
    """An async handler: it runs on the worker's handler event loop (its own thread)."""
    return text.upper()


@w.task("reverse")
def reverse(ctx: worker.TaskContext, text: str) -> str:
    """Reverse the text, character by character."""
    return text[::-1]


if __name__ == "__main__":
    w.run()  # blocks; SIGINT/SIGTERM drain in-flight tasks, then exit
