"""dagnats.discovery, dagnats.program and the small CLI outputs around them, without a server:
which URL a client uses, the note when it is not a local serve's, the program hints name,
the serve banner's export line, worker names, `version --json` and doctor's JSON checks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagnats import discovery, local_auth
from dagnats.cli.main import cli
from dagnats.program import program_name, with_program
from dagnats.server.doctor import Check
from dagnats.server.lock import DataDirLock
from dagnats.server.serve import ready_banner, url_line, worker_names
from dagnats.server.state import write_state


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """A private state dir and default data dir; serves are "run" by holding their lock."""
    monkeypatch.setenv(local_auth.STATE_DIR_ENV, str(tmp_path / "state"))
    monkeypatch.setenv(discovery.DATA_DIR_ENV, str(tmp_path / "default"))
    monkeypatch.delenv(discovery.URL_ENV, raising=False)
    yield {"default": tmp_path / "default", "a": tmp_path / "a", "b": tmp_path / "b"}


def running(stack: ExitStack, data_dir: Path, url: str) -> None:
    """Pretend a serve runs on `data_dir` at `url`: its lock, serve.json and registry entry."""
    local_auth.private_dir(data_dir)
    stack.enter_context(DataDirLock(data_dir))
    write_state(data_dir, url, detached=False)
    local_auth.register(data_dir, url, auth=False)


def test_the_url_comes_from_the_argument_the_env_a_local_serve_or_the_default(
        dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert discovery.resolve() == discovery.Resolution(discovery.DEFAULT_URL, "default")
    with ExitStack() as stack:
        running(stack, dirs["a"], "nats://127.0.0.1:25001")
        only = discovery.resolve()  # the only running serve
        assert (only.url, only.source) == ("nats://127.0.0.1:25001", "serve")
        assert only.serve is not None and only.serve.data_dir == dirs["a"].resolve()
        running(stack, dirs["b"], "nats://127.0.0.1:25002")
        assert discovery.resolve().url == discovery.DEFAULT_URL  # two: neither is guessed
        note = discovery.mismatch_note(discovery.resolve())
        assert note is not None and note.startswith(
            "note: using nats://127.0.0.1:4222 (the default); several local serves run: ")
        running(stack, dirs["default"], "nats://127.0.0.1:25003")
        assert discovery.resolve().url == "nats://127.0.0.1:25003"  # the default data dir's
        note = discovery.mismatch_note(discovery.resolve())  # chosen among several: said
        assert note is not None and note.startswith(
            "note: using nats://127.0.0.1:25003 (the serve of the default data dir ")
        assert "; other local serves: " in note
        assert "nats://127.0.0.1:25001 (data dir " in note and "127.0.0.1:25002 (" in note
        monkeypatch.setenv(discovery.URL_ENV, "nats://127.0.0.1:25002")
        assert discovery.resolve() == discovery.Resolution("nats://127.0.0.1:25002",
                                                           "DAGNATS_NATS_URL")
        assert discovery.resolve("nats://h:1").source == "--nats-url"
    assert discovery.resolve(None, {}).url == discovery.DEFAULT_URL  # the serves stopped


def test_a_note_says_when_the_url_used_is_not_the_local_serves(dirs: dict[str, Path]) -> None:
    with ExitStack() as stack:
        running(stack, dirs["a"], "nats://127.0.0.1:25222")
        env = {discovery.URL_ENV: "nats://127.0.0.1:4222"}
        note = discovery.mismatch_note(discovery.resolve(None, env), env)
        assert note == ("note: using nats://127.0.0.1:4222 (DAGNATS_NATS_URL); the local serve "
                        f"(data dir {dirs['a'].resolve()}) is at nats://127.0.0.1:25222")
        for same in ("nats://localhost:25222", "nats://u:pw@127.0.0.1:25222"):
            assert discovery.mismatch_note(discovery.resolve(same)) is None
        assert discovery.mismatch_note(discovery.resolve()) is None  # it is the one used
    assert discovery.mismatch_note(discovery.resolve("nats://127.0.0.1:9")) is None  # none runs


def test_hints_name_the_program_the_user_ran() -> None:
    assert program_name([], {"DAGNATS_PROG": "bin/dagnats"}) == "bin/dagnats"
    assert program_name(["./dagnats"], {}) == "./dagnats"
    assert program_name(["/x/site-packages/dagnats/__main__.py"], {}) == "dagnats"
    assert program_name(["/usr/bin/pytest"], {}) == "dagnats"
    assert with_program("stop it with `dagnats stop --data-dir d`", "./dagnats") == \
        "stop it with `./dagnats stop --data-dir d`"
    assert with_program("a dagnats serve runs", "./dagnats") == "a dagnats serve runs"
    assert with_program("(start one with: dagnats worker run FILE)", "bin/dagnats") == \
        "(start one with: bin/dagnats worker run FILE)"
    assert with_program("goes on (dagnats run watch 1)", "./dagnats") == \
        "goes on (./dagnats run watch 1)"


def test_the_banner_exports_a_url_on_another_port_and_a_detached_one_says_how_to_stop(
        tmp_path: Path) -> None:
    assert url_line("nats://127.0.0.1:4222", embedded=True) is None
    assert url_line("nats://127.0.0.1:25222", embedded=True) == \
        "export DAGNATS_NATS_URL=nats://127.0.0.1:25222"
    assert url_line("nats://elsewhere:25222", embedded=False) is None
    banner = ready_banner("nats://127.0.0.1:25222 (v)", tmp_path, [], [], True,
                          export="export DAGNATS_NATS_URL=nats://127.0.0.1:25222",
                          detached=True).splitlines()
    assert banner[-2] == "  clients    export DAGNATS_NATS_URL=nats://127.0.0.1:25222"
    assert banner[-1].endswith(f"stop --data-dir {tmp_path}")
    assert "Ctrl-C" not in "\n".join(banner)


def test_worker_names_do_not_double_the_word_worker() -> None:
    files = [Path("worker.py"), Path("hello.py"), Path("x/worker.py"), Path("workers.py"),
             Path("slow_worker.py")]
    assert worker_names(files) == ["worker", "worker-hello", "worker-2", "workers",
                                   "worker-slow_worker"]


def test_version_json_and_version_flag_agree() -> None:
    found = json.loads(CliRunner().invoke(cli, ["version", "--json"]).stdout)
    assert {"dagnats", "nats_server", "nats_py", "python", "platform"} <= set(found)
    flag = CliRunner().invoke(cli, ["--version"])
    assert flag.stdout == f"dagnats, version {found['dagnats']}\n"
    assert "unknown" not in found["dagnats"]


def test_doctor_checks_have_a_json_form() -> None:
    assert Check("FAIL", "disk", "full").to_json() == {"name": "disk", "status": "fail",
                                                      "detail": "full"}
    assert Check("..", "candidate", "PATH").to_json()["status"] == "info"
    assert Check("warn", "x", "y").to_json()["status"] == "warn"


def test_python_runs_code_and_keeps_the_cli_conventions(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    import sys

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))

    def python(*args: str) -> tuple[int, str, str]:
        done = CliRunner().invoke(cli, ["python", *args])
        return done.exit_code, done.stdout, done.stderr

    assert python("-c", "import sys, dagnats; print(sys.argv); sys.exit(6)", "a") == \
        (6, "['-c', 'a']\n", "")
    code = "from dagnats.errors import InvalidInput; raise InvalidInput('bad thing')"
    assert python("-c", code) == (2, "", "error: bad thing\n")  # a dagnats error: one line
    assert python()[0] == python("-m")[0] == python("-q")[0] == 2
    assert python(str(tmp_path / "nope.py")) == (
        2, "", f"error: cannot run {tmp_path / 'nope.py'}: no such file\n")
    (tmp_path / "mod_here.py").write_text("import sys\nprint('module', sys.argv[1:])\n")
    monkeypatch.chdir(tmp_path)
    assert python("-m", "mod_here", "--help") == (0, "module ['--help']\n", "")


def test_logs_name_empty_logs_once_instead_of_empty_sections(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "serve.log").write_text("x ready: NATS nats://127.0.0.1:4222\n")
    (logs / "api.log").write_text("")
    (logs / "engine.log").write_text("")
    done = CliRunner().invoke(cli, ["logs", "--data-dir", str(tmp_path)])
    assert done.stdout.splitlines() == [f"==> serve ({logs / 'serve.log'}) <==",
                                        "x ready: NATS nats://127.0.0.1:4222",
                                        "(empty so far: api, engine)"]


def test_a_worker_run_by_hand_says_when_it_would_miss_the_local_serve(
        dirs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    script = tmp_path / "tasks.py"
    script.write_text("print('no worker here')\n")
    with ExitStack() as stack:
        running(stack, dirs["a"], "nats://127.0.0.1:25222")
        found = CliRunner().invoke(cli, ["worker", "run", str(script)])
        assert (found.exit_code, found.stderr) == (0, "")  # its Worker() would find the serve
        monkeypatch.setenv(discovery.URL_ENV, "nats://127.0.0.1:4222")
        other = CliRunner().invoke(cli, ["worker", "run", str(script)])
        assert other.stderr == ("note: using nats://127.0.0.1:4222 (DAGNATS_NATS_URL); the local "
                                f"serve (data dir {dirs['a'].resolve()}) is at "
                                "nats://127.0.0.1:25222\n")
