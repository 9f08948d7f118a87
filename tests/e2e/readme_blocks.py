"""The runnable blocks of the docs: how they are marked, read, and run as a reader runs them.

Marking (HTML comments, invisible on GitHub), on the line just before a fenced block:

    <!-- run -->                  the block's commands run in order, each checked
    <!-- run: background -->      each command starts in the background (a serve, a worker)
                                  and runs until the end of the doc; the runner waits for its
                                  line saying `ready`
    <!-- run: save NAME -->       the block is saved as the file NAME (a scratch copy: NAME in
                                  later commands means that copy)
    <!-- run: same as FILE -->    the block (Python) is the code of FILE, docstrings and
                                  comments aside; it is compared, not run

and, on a line of its own, `<!-- run: background $ COMMAND -->` starts COMMAND in the
background with no block (what a doc assumes is already running, e.g. the README's serve).
Unmarked blocks never run.

A block is a transcript when a line starts with `$ `: those lines are the commands, the lines
under each are its output, and `(exit N)` its exit status (0 when not shown). Otherwise every
line is a command (a trailing `\\` continues it) and the `# ` comment lines right under it
are its output (`# (exit N)`); a comment line after a blank line is just a comment.

Output: each shown line must be among the lines the command printed (stdout and stderr, any
order, each used once), compared with runs of spaces as one, run ids (32 hex digits, or
shortened as `3f9c...`) and times matching any, and `...` matching anything. A run id shown
in a command's output stands for the real id printed there: later commands and outputs
that show it, or a prefix of it (`run status 3f9c1b2a`), get the real one. `<run id>` is
the id of the last run started (`run start`, `run rerun`). A read-only command (`run
status`, `run list`, `run events`, `dlq list`) whose output does not match yet is run again
until it does, for up to `SETTLE_S`: runs go on in the background, for the reader too.

Isolation: each doc gets its own HOME, XDG dirs, DAGNATS_STATE_DIR and free NATS port
(`bin/dagnats serve` gets `--nats-port`; the other commands find that serve by
themselves, as a reader's do), and the flaky
worker's printer file is a scratch file, not /tmp/dagnats-printer-online.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.e2e.harness import ROOT, free_port

#: The docs whose marked blocks run, in the order a reader reads them.
DOCS = ("README.md", "docs/failures.md", "docs/step-types.md")
#: How long a read-only command may take to show what the doc says it shows.
SETTLE_S = 20.0
#: How long a background command may take to say it is ready.
READY_S = 60.0
#: How long one command may take.
COMMAND_S = 60.0
#: Machine-wide files a doc touches, redirected to the doc's scratch dir (env var, file).
REDIRECTED = {"/tmp/dagnats-printer-online": ("FLAKY_PRINTER_FILE", "printer-online")}
READ_ONLY = re.compile(r"\bbin/dagnats (run (status|list|events)|dlq list)\b")
STARTS_RUN = re.compile(r"\bbin/dagnats run (start|rerun)\b")
MARK = re.compile(r"^<!-- run(?::\s*(?P<options>.*?))?\s*-->$")
FULL_ID = re.compile(r"\b[0-9a-f]{32}\b")
SHORT_ID = re.compile(r"\b([0-9a-f]{4,31})\.\.\.")
HEX_TOKEN = re.compile(r"\b[0-9a-f]{8,32}\b")
TIME = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?")
EXIT = re.compile(r"^\(exit (\d+)\)$")


@dataclass
class Command:
    """One command of a block: what to run, the output lines shown, the exit status shown."""

    text: str
    shown: list[str] = field(default_factory=list)
    exit: int = 0


@dataclass
class Block:
    """A marked fenced block of a doc."""

    doc: str
    line: int  # of its opening fence, 1-based
    kind: str  # "run", "background", "save" or "same"
    body: str
    save_as: str = ""  # the file a "save" block is saved as, or a "same" block is compared to

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"

    def commands(self) -> list[Command]:
        """The block's commands, each with the output and exit status it shows."""
        lines = self.body.splitlines()
        if any(line.startswith("$ ") for line in lines):
            return _transcript(lines)
        return _script(lines)


def _transcript(lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    for line in lines:
        if line.startswith("$ "):
            commands.append(Command(line[2:].strip()))
        elif commands and (code := EXIT.match(line.strip())):
            commands[-1].exit = int(code.group(1))
        elif commands and line.strip():
            commands[-1].shown.append(line)
    return commands


def _script(lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    under_command = False
    pending = ""
    for line in lines:
        stripped = line.strip()
        if pending:
            pending += "\n" + line
            if not stripped.endswith("\\"):
                commands.append(Command(pending))
                pending = ""
            continue
        if not stripped:
            under_command = False
        elif stripped.startswith("#"):
            if under_command:
                said = stripped[1:].strip()
                if code := EXIT.match(said):
                    commands[-1].exit = int(code.group(1))
                else:
                    commands[-1].shown.append(said)
        elif stripped.endswith("\\"):
            pending, under_command = line, True
        else:
            commands.append(Command(line))
            under_command = True
    return commands


def read_blocks(doc: str) -> list[Block]:
    """Every marked block of `doc` (a path relative to the repo root), in order."""
    return parse_blocks(doc, (ROOT / doc).read_text())


def parse_blocks(doc: str, text: str) -> list[Block]:
    """Every marked block of the Markdown `text` of `doc`, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        mark = MARK.match(lines[i].strip())
        i += 1
        if not mark:
            continue
        options = (mark.group("options") or "").strip()
        if options.startswith("background $ "):
            blocks.append(Block(doc, i, "background", options.split("$ ", 1)[1]))
            continue
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].startswith("```"):
            raise ValueError(f"{doc}:{i}: a run mark must come just before a fenced block")
        start, i = i, i + 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        if options.startswith("same as "):
            blocks.append(Block(doc, start + 1, "same", "\n".join(body) + "\n",
                                options.split(None, 2)[2]))
        elif options.startswith("save "):
            blocks.append(Block(doc, start + 1, "save", "\n".join(body) + "\n",
                                options.split(None, 1)[1]))
        elif options in ("", "background"):
            blocks.append(Block(doc, start + 1, options or "run", "\n".join(body)))
        else:
            raise ValueError(f"{doc}:{start}: unknown run mark options {options!r}")
    return blocks


def _pattern(shown: str) -> re.Pattern[str]:
    """A shown output line as a pattern over one printed line (spaces collapsed); each run
    id in it is a group."""
    text = " ".join(shown.split())
    parts: list[str] = []
    token = re.compile(rf"{FULL_ID.pattern}|{SHORT_ID.pattern}|{TIME.pattern}|\.\.\.")
    last = 0
    for found in token.finditer(text):
        parts.append(re.escape(text[last:found.start()]))
        matched = found.group(0)
        if matched == "...":
            parts.append(".*?")
        elif TIME.fullmatch(matched):
            parts.append(TIME.pattern)
        else:
            parts.append("([0-9a-f]{32})")
        last = found.end()
    parts.append(re.escape(text[last:]))
    return re.compile("".join(parts))


def _shown_ids(shown: str) -> list[str]:
    """The run ids (or their shown prefixes) in a shown line, in order."""
    return [m.group(1) or m.group(0) for m in
            re.finditer(rf"{FULL_ID.pattern}|{SHORT_ID.pattern}", " ".join(shown.split()))]


class BlockFailed(AssertionError):
    """A command of a block did not do what the block says."""


class Background:
    """A command started in the background; its output is collected as it comes."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.tree: list[psutil.Process] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_ready(self) -> None:
        """Block until it prints a line saying `ready`; fail with what it printed."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.output.append(line)
            if re.search(r"\bready\b", line):
                return
        raise BlockFailed(f"`{self.command}` never said it was ready; it printed:\n" +
                          "\n".join(self.output))

    def terminate(self) -> None:
        """SIGTERM it (remembering its tree, to kill what is left after `reap`)."""
        try:
            self.tree = [psutil.Process(self.proc.pid),
                         *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            self.tree = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def reap(self) -> None:
        """Wait for it to exit; kill whatever of its tree is left."""
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        for proc in self.tree:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(timeout=10)


class DocSession:
    """One doc read top to bottom: its scratch dirs, environment and background processes."""

    def __init__(self, doc: str, scratch: Path) -> None:
        self.doc = doc
        self.blocks = read_blocks(doc)
        self.scratch = scratch
        self.port = free_port()
        home = scratch / "home"
        for name in ("home", "data", "state", "cache", "config", "dagnats-state"):
            (scratch / name).mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items()  # the suite's default data dir is
                     if k != "DAGNATS_DATA_DIR"}             # not this doc's: XDG_DATA_HOME is
        self.env = {**inherited, "HOME": str(home), "XDG_DATA_HOME": str(scratch / "data"),
                    "XDG_STATE_HOME": str(scratch / "state"),
                    "XDG_CACHE_HOME": str(scratch / "cache"),
                    "XDG_CONFIG_HOME": str(scratch / "config"),
                    "DAGNATS_STATE_DIR": str(scratch / "dagnats-state")}
        self.env.pop("DAGNATS_NATS_URL", None)  # commands find the doc's serve themselves
        self.redirects: dict[str, str] = {}
        for path, (env_var, name) in REDIRECTED.items():
            self.redirects[path] = str(scratch / name)
            self.env[env_var] = str(scratch / name)
        self.saved: dict[str, str] = {}
        self.ids: list[tuple[str, str]] = []  # (shown id or prefix, real id)
        self.last_run = ""
        self.done = 0  # blocks run so far
        self.failed: str | None = None
        self.background: list[Background] = []

    def run_through(self, block: Block) -> None:
        """Run the blocks of this doc up to and including `block` (those not run yet)."""
        index = self.blocks.index(block)
        while self.done <= index:
            current = self.blocks[self.done]
            if self.failed:
                raise BlockFailed(f"not run: an earlier block failed ({self.failed})")
            self.done += 1
            try:
                self._run_block(current)
            except BlockFailed:
                self.failed = current.name
                raise

    def _run_block(self, block: Block) -> None:
        if block.kind == "same":
            shown, actual = _code(block.body), _code((ROOT / block.save_as).read_text())
            if shown != actual:
                raise BlockFailed(f"{block.name}: the code shown is not that of "
                                  f"{block.save_as}:\n{_indent(block.body)}")
            return
        if block.kind == "save":
            path = self.scratch / "files" / block.save_as
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body)
            self.saved[block.save_as] = str(path)
            return
        for command in block.commands():
            text = self._rewrite(command.text)
            if block.kind == "background":
                started = Background(text, self.env)
                self.background.append(started)
                started.wait_ready()
            else:
                self._run_command(block, command, text)

    def _rewrite(self, text: str) -> str:
        """The command as run: placeholders filled in, paths redirected, serve's port set."""
        text = self._real_ids(text)
        text = text.replace("<run id>", self.last_run or "<no run started yet>")
        for path, scratch in self.redirects.items():
            text = text.replace(path, scratch)
        for name, path in self.saved.items():
            text = re.sub(rf"(?<![\w/.]){re.escape(name)}\b", shlex.quote(path), text)
        if re.search(r"\bbin/dagnats serve\b", text) and "--nats-port" not in text:
            text = re.sub(r"\bbin/dagnats serve\b", f"bin/dagnats serve --nats-port {self.port}",
                          text, count=1)
        return text

    def _real_ids(self, text: str) -> str:
        """`text` with each run id (or prefix) shown earlier replaced by the real one."""
        def real(found: re.Match[str]) -> str:
            token = found.group(0)
            for shown, actual in reversed(self.ids):
                if token.startswith(shown) or shown.startswith(token):
                    return actual[:len(token)]
            return token
        return HEX_TOKEN.sub(real, text)

    def _run_command(self, block: Block, command: Command, text: str) -> None:
        deadline = time.monotonic() + SETTLE_S
        while True:
            done = subprocess.run(["bash", "-c", text], cwd=ROOT, env=self.env,
                                  capture_output=True, text=True, timeout=COMMAND_S)
            printed = done.stdout + done.stderr
            for path, scratch in self.redirects.items():
                printed = printed.replace(scratch, path)
            problem = self._check(command, done.returncode, printed)
            if problem is None:
                break
            if not READ_ONLY.search(text) or time.monotonic() > deadline:
                raise BlockFailed(
                    f"{block.name}: {problem}\n  command: {command.text}\n  ran: {text}\n"
                    f"  exit: {done.returncode}\n  output:\n{_indent(printed)}\n"
                    f"  the block:\n{_indent(block.body)}")
            time.sleep(0.25)
        if STARTS_RUN.search(text) and (started := FULL_ID.search(done.stdout)):
            self.last_run = started.group(0)

    def _check(self, command: Command, code: int, printed: str) -> str | None:
        """What is wrong with this outcome, or None; records the ids the output shows."""
        if code != command.exit:
            return f"exited {code}, the doc says {command.exit}"
        lines = [" ".join(line.split()) for line in printed.splitlines()]
        used: set[int] = set()
        pairs: list[tuple[str, str]] = []
        for shown in command.shown:
            pattern = _pattern(self._real_ids(shown))
            for i, line in enumerate(lines):
                if i not in used and (match := pattern.fullmatch(line)):
                    used.add(i)
                    pairs += zip(_shown_ids(shown), match.groups(), strict=True)
                    break
            else:
                return f"printed no line like {shown!r}"
        for shown, actual in pairs:
            if shown != actual and (shown, actual) not in self.ids:
                self.ids.append((shown, actual))
        return None

    def close(self) -> None:
        """Stop every background process, all at once, as Ctrl-C in each terminal would."""
        for started in self.background:
            started.terminate()
        for started in self.background:
            started.reap()
        self.background.clear()


def _code(source: str) -> str:
    """Python source as its syntax tree without docstrings: what the code does, not how it
    is laid out or commented."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree)


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.rstrip().splitlines())
