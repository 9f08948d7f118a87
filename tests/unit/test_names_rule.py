"""Nothing but dagnats.names formats a subject, KV key, consumer name or message id.

Scans every module of the package for string literals (plain, or parts of f-strings) that
spell one by hand: a subject prefix such as "history." or "$KV.", or a message-id kind such
as ":started" or "skipped-g". Build them with dagnats.names instead.
"""

from __future__ import annotations

import ast
import pathlib

#: Literals that start like a name dagnats gives (streams' subjects, KV, JetStream API, the
#: API, consumers, message ids).
PREFIXES = ("history.", "task.", "timer.", "dead.", "$KV.", "$JS.", "dagnats.api.", "dagnats.live.",
            "presence.",
            "poison:")
#: Pieces of names wherever they sit in an f-string: message-id kinds, and the prefixes of
#: task consumers (task_<task>) and KV streams (KV_<bucket>).
F_STRING_PIECES = (":started", ":dead", ":task", ":timer:", ":resumed:", ":g", "started-",
                   "recovered-g", "skipped-g", "task_", "KV_")
#: Literals that only look like names, and why.
NOT_NAMES = {"timer.fired": "an event type (dagnats.dag.events), not a subject"}


def _literals(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, text, inside an f-string) of every string literal."""
    found: list[tuple[int, str, bool]] = []
    in_fstring = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
                  for part in node.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value, id(node) in in_fstring))
    return found


def _prefix_formatting(tree: ast.AST) -> list[int]:
    """Lines of f-strings that format a name from its parts (f"{names.TIMER_PREFIX}.>")."""
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)
            for part in node.values if isinstance(part, ast.FormattedValue)
            and ast.unparse(part.value).endswith(("_PREFIX", "_TOKEN"))]


def test_no_module_but_names_spells_a_name() -> None:
    offences = []
    for path in sorted(pathlib.Path("dagnats").rglob("*.py")):
        if path.as_posix() == "dagnats/names.py":
            continue
        tree = ast.parse(path.read_text())
        offences += [f"{path}:{line}: an f-string of a name's parts"
                     for line in _prefix_formatting(tree)]
        for line, text, in_fstring in _literals(tree):
            if text in NOT_NAMES:
                continue
            pieces = in_fstring and any(piece in text for piece in F_STRING_PIECES)
            if text.startswith(PREFIXES) or pieces:
                offences.append(f"{path}:{line}: {text!r}")
    assert not offences, "build these with dagnats.names:\n" + "\n".join(offences)
