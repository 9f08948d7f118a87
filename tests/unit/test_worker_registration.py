"""Registering handlers on a Worker: refusals at registration, and the input/output adapters."""

from __future__ import annotations

import dataclasses
import threading
import typing
from typing import Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

import dagnats.worker as worker_pkg
from dagnats import worker
from dagnats.dag.tasks import TaskMessage
from dagnats.errors import DagnatsError
from dagnats.worker._errors import InvalidTaskInput, InvalidTaskOutput
from dagnats.worker._registry import Handler, build_handler


class Review(BaseModel):
    repo: str
    branch: str = "main"


class Report(BaseModel):
    issues: int
    report: str


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Person(TypedDict):
    name: str
    age: int


def make_worker() -> worker.Worker:
    return worker.Worker("nats://127.0.0.1:1", lease=2.0)


def handler(fn: Any, name: str = "t") -> Handler:
    return build_handler(name, fn)


# --- the public surface ---------------------------------------------------------------------

def test_public_surface_is_exactly_all() -> None:
    assert sorted(worker_pkg.__all__) == sorted(
        ["Worker", "TaskContext", "handle_typed", "NonRetryableError", "RegistrationError",
         "CancelSignal", "RunCancelled", "Continue"])
    public = {name for name in vars(worker_pkg) if not name.startswith("_")}
    assert public - {"annotations"} <= set(worker_pkg.__all__)


def test_registration_error_is_a_dagnats_error() -> None:
    assert issubclass(worker.RegistrationError, DagnatsError)
    assert issubclass(InvalidTaskInput, worker.NonRetryableError)


# --- refusals -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["", "a.b", "a b", "task.>", "*", "é", "a/b"])
def test_bad_task_names_are_refused(name: str) -> None:
    def greet(ctx: worker.TaskContext, who: str) -> str:
        return who

    with pytest.raises(worker.RegistrationError, match=r"task name") as info:
        worker.handle_typed(make_worker(), name, greet)
    assert "greet" in str(info.value)


def test_duplicate_task_name_is_refused_naming_both_handlers() -> None:
    w = make_worker()

    def first(ctx: worker.TaskContext, x: str) -> str:
        return x

    def second(ctx: worker.TaskContext, x: str) -> str:
        return x

    worker.handle_typed(w, "dup", first)
    with pytest.raises(worker.RegistrationError, match="already registered") as info:
        worker.handle_typed(w, "dup", second)
    assert "first" in str(info.value) and "second" in str(info.value)
    assert w.tasks == ["dup"]


def test_decorator_refuses_duplicates_too() -> None:
    w = make_worker()

    @w.task("same")
    async def one(ctx: worker.TaskContext, x: int) -> int:
        return x

    with pytest.raises(worker.RegistrationError, match="'same'"):
        @w.task("same")
        async def two(ctx: worker.TaskContext, x: int) -> int:
            return x


@pytest.mark.parametrize("fn", [
    lambda: None,
    lambda ctx: None,
    lambda ctx, a, b: None,
    lambda *args: None,
    lambda ctx, **kwargs: None,
    lambda ctx, *, data: None,
])
def test_wrong_parameter_count_or_kind_is_refused(fn: Any) -> None:
    with pytest.raises(worker.RegistrationError, match=r"\(ctx, input\)") as info:
        worker.handle_typed(make_worker(), "t", fn)
    assert "<lambda>" in str(info.value)


def test_unadaptable_input_annotation_is_refused() -> None:
    def locked(ctx: worker.TaskContext, lock: threading.Lock) -> None:
        return None

    with pytest.raises(worker.RegistrationError, match="pydantic cannot validate") as info:
        worker.handle_typed(make_worker(), "locked", locked)
    assert "locked" in str(info.value) and "`lock`" in str(info.value)


def test_unadaptable_return_annotation_is_refused() -> None:
    def returns_function(ctx: worker.TaskContext, x: int) -> type(lambda: None):  # type: ignore
        return lambda: None

    with pytest.raises(worker.RegistrationError, match="return annotation"):
        worker.handle_typed(make_worker(), "fn", returns_function)


def test_unresolvable_string_annotation_is_refused() -> None:
    def forward(ctx: worker.TaskContext, x: NotDefinedAnywhere) -> int:  # type: ignore # noqa: F821
        return 1

    with pytest.raises(worker.RegistrationError, match="cannot resolve"):
        worker.handle_typed(make_worker(), "fwd", forward)


def test_swapped_ctx_and_input_is_refused() -> None:
    def swapped(name: str, ctx: worker.TaskContext) -> str:
        return name

    with pytest.raises(worker.RegistrationError, match="first parameter `name`"):
        worker.handle_typed(make_worker(), "swapped", swapped)


def test_non_callables_and_generators_are_refused() -> None:
    def gen(ctx: worker.TaskContext, x: int) -> Any:
        yield x

    with pytest.raises(worker.RegistrationError, match="not callable"):
        worker.handle_typed(make_worker(), "x", 42)  # type: ignore[arg-type]
    with pytest.raises(worker.RegistrationError, match="generator"):
        worker.handle_typed(make_worker(), "g", gen)


def test_registration_error_message_is_one_actionable_line() -> None:
    with pytest.raises(worker.RegistrationError) as info:
        worker.handle_typed(make_worker(), "t", lambda: None)
    assert "\n" not in str(info.value)
    assert "def handler(ctx: worker.TaskContext, input: T) -> R" in str(info.value)


# --- accepted handlers ----------------------------------------------------------------------

def test_sync_async_and_unannotated_handlers_are_accepted() -> None:
    w = make_worker()

    def plain(ctx, data):  # type: ignore[no-untyped-def]
        return data

    async def coro(ctx: worker.TaskContext, text: str) -> str:
        return text

    class Callable_:
        async def __call__(self, ctx: worker.TaskContext, n: int) -> int:
            return n

    worker.handle_typed(w, "plain", plain)
    worker.handle_typed(w, "coro", coro)
    worker.handle_typed(w, "obj", Callable_())
    assert w.tasks == ["plain", "coro", "obj"]
    assert not handler(plain).is_async
    assert handler(coro).is_async
    assert handler(Callable_()).is_async


def test_decorator_returns_the_function_unchanged() -> None:
    w = make_worker()

    @w.task("up")
    def up(ctx: worker.TaskContext, text: str) -> str:
        return text.upper()

    assert up(None, "a") == "A"  # type: ignore[arg-type]
    assert w.tasks == ["up"]


# --- adapters -------------------------------------------------------------------------------

def test_str_adapter_validates_and_names_the_problem() -> None:
    def greet(ctx: worker.TaskContext, name: str) -> str:
        return name

    h = handler(greet, "greet")
    assert h.parse_input("Ada") == "Ada"
    with pytest.raises(InvalidTaskInput) as info:
        h.parse_input(42)
    assert str(info.value) == "invalid input for task 'greet': expected str, got int (input)"


def test_int_adapter() -> None:
    def double(ctx: worker.TaskContext, n: int) -> int:
        return n * 2

    h = handler(double)
    assert h.parse_input(21) == 21
    assert h.dump_output(42) == 42
    with pytest.raises(InvalidTaskInput, match=r"expected int, got str \(input\)"):
        h.parse_input("many")


def test_basemodel_adapter_names_the_field() -> None:
    def review(ctx: worker.TaskContext, inp: Review) -> Report:
        return Report(issues=3, report="ok")

    h = handler(review, "review")
    assert h.parse_input({"repo": "r"}) == Review(repo="r", branch="main")
    assert h.dump_output(Report(issues=3, report="ok")) == {"issues": 3, "report": "ok"}
    with pytest.raises(InvalidTaskInput) as info:
        h.parse_input({"branch": 7})
    message = str(info.value)
    assert "field required (input.repo)" in message
    assert "expected str, got int (input.branch)" in message
    assert "\n" not in message
    with pytest.raises(InvalidTaskInput, match=r"expected Review, got str \(input\)"):
        h.parse_input("not a dict")


def test_dataclass_adapter() -> None:
    def move(ctx: worker.TaskContext, p: Point) -> Point:
        return Point(p.x + 1, p.y)

    h = handler(move)
    assert h.parse_input({"x": 1, "y": 2}) == Point(1, 2)
    assert h.dump_output(Point(2, 2)) == {"x": 2, "y": 2}
    with pytest.raises(InvalidTaskInput, match=r"input\.y"):
        h.parse_input({"x": 1})


def test_typeddict_adapter() -> None:
    def older(ctx: worker.TaskContext, person: Person) -> Person:
        return {"name": person["name"], "age": person["age"] + 1}

    h = handler(older)
    assert h.parse_input({"name": "Ada", "age": 36}) == {"name": "Ada", "age": 36}
    assert h.dump_output({"name": "Ada", "age": 37}) == {"name": "Ada", "age": 37}
    with pytest.raises(InvalidTaskInput, match=r"expected int, got str \(input\.age\)"):
        h.parse_input({"name": "Ada", "age": "old"})


class OldStyle(typing.TypedDict):
    name: str


def test_typing_typeddict_is_refused_with_pydantics_hint() -> None:
    def old(ctx: worker.TaskContext, person: OldStyle) -> None:
        return None

    with pytest.raises(worker.RegistrationError, match="typing_extensions"):
        worker.handle_typed(make_worker(), "old", old)


def test_list_adapter() -> None:
    def total(ctx: worker.TaskContext, items: list[Point]) -> list[int]:
        return [p.x + p.y for p in items]

    h = handler(total)
    assert h.parse_input([{"x": 1, "y": 2}]) == [Point(1, 2)]
    assert h.dump_output([3]) == [3]
    with pytest.raises(InvalidTaskInput, match=r"input\.1\.x"):
        h.parse_input([{"x": 1, "y": 2}, {"x": "a", "y": 2}])


def test_missing_annotations_mean_any_json_value() -> None:
    def anything(ctx, value):  # type: ignore[no-untyped-def]
        return value

    h = handler(anything)
    assert h.parse_input({"a": [1, None]}) == {"a": [1, None]}
    assert h.dump_output({"a": (1, 2)}) == {"a": [1, 2]}


def test_output_that_does_not_fit_the_annotation_is_refused() -> None:
    def wrong(ctx: worker.TaskContext, x: int) -> int:
        return "not an int"  # type: ignore[return-value]

    h = handler(wrong, "wrong")
    with pytest.raises(InvalidTaskOutput) as info:
        h.dump_output("not an int")
    assert str(info.value) == ("invalid output of task 'wrong': the handler returned str,"
                               " which cannot be serialized as int")

    def reports(ctx: worker.TaskContext, x: int) -> list[Report]:
        return []

    with pytest.raises(InvalidTaskOutput, match=r"returned int, .* as list\[.*Report\]$"):
        handler(reports).dump_output(3)
    with pytest.raises(InvalidTaskOutput):
        handler(lambda ctx, x: x).dump_output(object())


def test_string_annotations_are_resolved() -> None:
    namespace: dict[str, Any] = {}
    exec(  # a module written with `from __future__ import annotations`
        "from __future__ import annotations\n"
        "from dagnats import worker\n"
        "def greet(ctx: worker.TaskContext, name: str) -> str:\n"
        "    return name\n", namespace)
    h = handler(namespace["greet"])
    with pytest.raises(InvalidTaskInput, match="expected str"):
        h.parse_input(1)


# --- TaskContext ----------------------------------------------------------------------------

def test_task_context_exposes_the_task_and_a_prefixed_logger(
        caplog: pytest.LogCaptureFixture) -> None:
    beats: list[int] = []
    task = TaskMessage(run_id="abcd1234efgh", workflow="wf", step_id="greet", task="greet",
                       attempt=2, max_attempts=3, input="x")
    ctx = worker.TaskContext(task, heartbeat=lambda: beats.append(1))
    assert (ctx.run_id, ctx.step_id, ctx.workflow, ctx.task) == ("abcd1234efgh", "greet",
                                                                 "wf", "greet")
    assert (ctx.attempt, ctx.max_attempts) == (2, 3)
    ctx.heartbeat()
    assert beats == [1]
    with caplog.at_level("INFO", logger="dagnats.task"):
        ctx.logger.info("hello %s", "there")
    assert caplog.records[-1].getMessage() == "[run abcd1234 step greet#2] hello there"
    assert caplog.records[-1].run_id == "abcd1234efgh"  # type: ignore[attr-defined]
    worker.TaskContext(task).heartbeat()  # without a worker: a no-op


# --- Worker settings ------------------------------------------------------------------------

def test_lease_comes_from_argument_then_env_then_default(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    monkeypatch.delenv("DAGNATS_TASK_LEASE", raising=False)
    assert worker.Worker().lease_s == 30.0
    monkeypatch.setenv("DAGNATS_TASK_LEASE", "2.5")
    assert worker.Worker().lease_s == 2.5
    assert worker.Worker(lease=timedelta(seconds=4)).lease_s == 4.0
    monkeypatch.setenv("DAGNATS_TASK_LEASE", "soon")
    with pytest.raises(ValueError, match="DAGNATS_TASK_LEASE"):
        worker.Worker()
    with pytest.raises(ValueError, match="positive"):
        worker.Worker(lease=0)


def test_nats_url_comes_from_argument_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGNATS_NATS_URL", "nats://example:4222")
    assert worker.Worker().nats_url == "nats://example:4222"
    assert worker.Worker("nats://other:1").nats_url == "nats://other:1"
    monkeypatch.delenv("DAGNATS_NATS_URL")
    assert worker.Worker().nats_url == "nats://127.0.0.1:4222"


def test_ctx_may_be_annotated_with_a_base_of_task_context() -> None:
    def loose(ctx: object, x: int) -> int:
        return x

    def anything(ctx: Any, x: int) -> int:
        return x

    w = make_worker()
    worker.handle_typed(w, "loose", loose)
    worker.handle_typed(w, "anything", anything)
    assert w.tasks == ["loose", "anything"]
