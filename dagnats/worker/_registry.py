"""Handler registration: validate a handler once, when it is registered, and build its adapters.

A handler takes `(ctx, input)` and returns its output. Its input and return annotations are
turned into pydantic TypeAdapters here, so a handler pydantic cannot adapt is refused when
the worker is built (naming it), not when its first task arrives. A missing annotation means
`Any`: the JSON value is passed through as is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic
from pydantic import TypeAdapter

from dagnats import names, strict_json
from dagnats.worker._context import TaskContext
from dagnats.worker._errors import InvalidTaskInput, InvalidTaskOutput, RegistrationError

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_MAX_REPORTED_ERRORS = 3
# pydantic error types whose expected Python type is plain to name.
_EXPECTED_TYPES = {
    "string_type": "str", "int_type": "int", "int_parsing": "int", "int_from_float": "int",
    "float_type": "float", "float_parsing": "float", "bool_type": "bool",
    "bool_parsing": "bool", "dict_type": "dict", "list_type": "list", "tuple_type": "tuple",
    "none_required": "None",
}


@dataclass(frozen=True)
class Handler:
    """A registered handler with the adapters for its input and output."""

    task: str
    fn: Callable[..., Any]
    is_async: bool
    input_adapter: TypeAdapter[Any]
    output_adapter: TypeAdapter[Any]
    output_type: str
    """The return annotation as messages show it, such as `int` or `list[Report]`."""

    @property
    def label(self) -> str:
        """The handler as messages name it, such as `app.greet`."""
        return describe(self.fn)

    def parse_input(self, value: Any) -> Any:
        """The task input validated into the handler's input type; InvalidTaskInput if not."""
        try:
            return self.input_adapter.validate_python(value)
        except pydantic.ValidationError as exc:
            raise InvalidTaskInput(
                f"invalid input for task {self.task!r}: {summarize(exc)}"
            ) from exc

    def dump_output(self, value: Any) -> Any:
        """The handler's result as a JSON value; InvalidTaskOutput if it does not fit.

        Strict, as all JSON dagnats takes in: NaN, infinities, lone surrogates and nesting
        deeper than limits.JSON_MAX_DEPTH fail the step, instead of becoming null (pydantic
        writes a non-finite float as null).
        """
        try:
            strict_json.check(value)
        except strict_json.JsonRefused as exc:
            raise InvalidTaskOutput(f"invalid output of task {self.task!r}: {exc}") from None
        try:
            return self.output_adapter.dump_python(value, mode="json", warnings="error")
        except (ValueError, TypeError) as exc:  # PydanticSerializationError is a ValueError
            raise InvalidTaskOutput(
                f"invalid output of task {self.task!r}: the handler returned"
                f" {type(value).__name__}, which cannot be serialized as {self.output_type}"
            ) from exc


def describe(fn: object) -> str:
    """A handler's name for messages: module and qualified name when it has them."""
    qualname = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


def summarize(exc: pydantic.ValidationError) -> str:
    """A pydantic validation error in one line: 'expected str, got int (input)'."""
    errors = exc.errors(include_url=False)
    parts = [_one_error(error) for error in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def _one_error(error: Any) -> str:
    where = ".".join(["input", *(str(part) for part in error["loc"])])
    if error["type"] == "missing":
        return f"field required ({where})"
    got = type(error["input"]).__name__
    expected = _EXPECTED_TYPES.get(error["type"]) or (error.get("ctx") or {}).get("class_name")
    if expected:
        return f"expected {expected}, got {got} ({where})"
    message = str(error["msg"])
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    return f"{message[:1].lower()}{message[1:]}, got {got} ({where})"


def build_handler(task: str, fn: Callable[..., Any]) -> Handler:
    """Validate `fn` as the handler of `task` and build its adapters; RegistrationError if not."""
    if not isinstance(task, str) or not names.is_token(task):
        raise RegistrationError(
            f"cannot register {describe(fn)} under task name {task!r}: a task name must be"
            " letters, digits, '_' or '-' (it becomes the subject token task.<name>)"
        )
    where = f"handler {describe(fn)} of task {task!r}"
    if not callable(fn):
        raise RegistrationError(f"{where} is not callable: pass a function (ctx, input) -> output")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise RegistrationError(f"{where} is a generator: return the output instead of yielding")
    ctx_param, input_param, returns = _signature(fn, where)
    _check_ctx(ctx_param, where)
    return Handler(
        task=task, fn=fn, is_async=_is_async(fn),
        input_adapter=_adapter(input_param.annotation, f"{where}: input `{input_param.name}`"),
        output_adapter=_adapter(returns, f"{where}: return annotation"),
        output_type=_type_name(returns),
    )


def _signature(
    fn: Callable[..., Any], where: str
) -> tuple[inspect.Parameter, inspect.Parameter, Any]:
    """The ctx and input parameters and the return annotation, resolved from strings."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, AttributeError, SyntaxError) as exc:
        raise RegistrationError(
            f"{where}: cannot resolve its annotations ({exc}); import the names they use"
            " at module level"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise RegistrationError(f"{where}: cannot read its signature ({exc})") from exc
    params = list(signature.parameters.values())
    if len(params) != 2 or any(param.kind not in _POSITIONAL for param in params):
        shown = ", ".join(str(param) for param in params) or "nothing"
        raise RegistrationError(
            f"{where} must take exactly two positional parameters (ctx, input), it takes"
            f" ({shown}); declare `def handler(ctx: worker.TaskContext, input: T) -> R`"
        )
    return params[0], params[1], signature.return_annotation


def _check_ctx(first: inspect.Parameter, where: str) -> None:
    """Refuse a first parameter annotated with a class TaskContext is not (swapped arguments)."""
    annotation = first.annotation
    if annotation in (inspect.Parameter.empty, Any) or not isinstance(annotation, type):
        return  # unannotated, Any, or a form (a union, a protocol...) we do not judge
    if issubclass(TaskContext, annotation):
        return  # TaskContext itself, or a base of it such as object
    raise RegistrationError(
        f"{where}: its first parameter `{first.name}` is annotated {annotation.__name__}, but"
        " it receives the TaskContext; the order is (ctx, input)"
    )


def _adapter(annotation: Any, where: str) -> TypeAdapter[Any]:
    """A complete TypeAdapter for `annotation` (Any when absent); RegistrationError if none."""
    if annotation is inspect.Parameter.empty:
        annotation = Any
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        if not adapter.pydantic_complete:
            adapter.rebuild(raise_errors=True)
    except Exception as exc:  # pydantic raises several types for an unusable annotation
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RegistrationError(
            f"{where} is {annotation!r}, which pydantic cannot validate ({first}); use JSON"
            " types, a pydantic BaseModel, a dataclass or a TypedDict (from typing_extensions"
            " before Python 3.12)"
        ) from exc
    return adapter


def _type_name(annotation: Any) -> str:
    if annotation in (inspect.Parameter.empty, Any):
        return "a JSON value"
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return repr(annotation).replace("typing.", "")


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


class Registry:
    """The handlers of one worker, by task name; refuses a second handler for a name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, task: str, fn: Callable[..., Any]) -> Handler:
        """Validate and register `fn` for `task`; RegistrationError when refused."""
        handler = build_handler(task, fn)
        existing = self._handlers.get(task)
        if existing is not None:
            raise RegistrationError(
                f"cannot register {handler.label} for task {task!r}: {existing.label} is"
                " already registered for it; a task has one handler per worker"
            )
        self._handlers[task] = handler
        return handler

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    def names(self) -> list[str]:
        """The registered task names, in registration order."""
        return list(self._handlers)
