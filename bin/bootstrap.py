"""First-use setup shared by bin/dagnats and bin/test.

Creates `.venv` beside the checkout, installs the pinned requirements into it and
links the checkout in with a `.pth` file, all under a file lock so that two commands
started together on a fresh clone do not collide. A stamp holding the hash of the
requirements makes later starts cost nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("DAGNATS_VENV", ROOT / ".venv"))


def _venv_python() -> Path:
    return VENV / "bin" / "python"


def _requirements_digest(name: str) -> str:
    digest = hashlib.sha256()
    folder = ROOT / "requirements"
    for path in sorted(folder.glob("*.txt")):
        digest.update(path.name.encode() + path.read_bytes())
    return f"{name}-{digest.hexdigest()[:16]}"


def _install(requirements: str, stamp: Path) -> None:
    if not _venv_python().exists():
        print(f"dagnats: first use, creating {VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f"dagnats: installing requirements/{requirements}.txt ...", file=sys.stderr)
    pip = [str(_venv_python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "-r", str(ROOT / "requirements" / f"{requirements}.txt")], check=True)
    site = subprocess.run(
        [str(_venv_python()), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(site, "dagnats-checkout.pth").write_text(f"{ROOT}\n")
    for old in VENV.glob(f".stamp-{requirements}-*"):
        old.unlink()
    stamp.touch()


def ensure_env(requirements: str) -> Path:
    """Make sure `.venv` has `requirements/<requirements>.txt`; return its python."""
    if sys.version_info < (3, 11):  # noqa: UP036 - runs under the system python
        sys.exit(f"dagnats needs Python 3.11 or newer; this is {sysconfig.get_python_version()}")
    stamp = VENV / f".stamp-{_requirements_digest(requirements)}"
    if stamp.exists():
        return _venv_python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(str(VENV) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            try:
                _install(requirements, stamp)
            except subprocess.CalledProcessError as exc:
                sys.exit(f"dagnats: installing requirements failed ({exc}); see pip's output above")
    return _venv_python()


def exec_in_env(requirements: str, argv: list[str]) -> None:
    """Replace this process with `argv` run by the venv's python."""
    python = ensure_env(requirements)
    os.execv(str(python), [str(python), *argv])
