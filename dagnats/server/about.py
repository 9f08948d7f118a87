"""What `dagnats version` reports: dagnats, nats-server, nats-py, pydantic, the event loop,
Python and the platform."""

from __future__ import annotations

import platform
import re
import sys
from importlib import metadata
from pathlib import Path

from dagnats.errors import DagnatsError
from dagnats.server import binary


def dagnats_version() -> str:
    """This dagnats' version; from a bare checkout, pyproject's version plus "+checkout"."""
    try:
        return metadata.version("dagnats")
    except metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        found = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.MULTILINE)
    except OSError:
        found = None
    return f"{found.group(1)}+checkout" if found else "unknown"


def package_version(name: str) -> str:
    """An installed distribution's version, or "not installed"."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def nats_server_line(explicit: str | None = None) -> str:
    """"2.15.1 (/path/to/nats-server)", or why none was found (without downloading)."""
    try:
        path = binary.find_nats_server(explicit)
        return f"{binary.nats_server_version(path)} ({path})"
    except DagnatsError as exc:
        return f"none found ({exc.message})"


def compiled_lines() -> list[tuple[str, str]]:
    """pydantic-core and the event loop, as loaded: these compiled modules are the ones a file
    built for several CPythons picks per interpreter, so a wrong pick shows here."""
    try:
        import pydantic_core

        core = f"{package_version('pydantic')} (pydantic-core {pydantic_core.__version__})"
    except ImportError as exc:
        core = f"cannot load pydantic-core ({exc})"
    from dagnats import aio

    loop = (f"uvloop {package_version('uvloop')}" if aio.loop_factory() is not None
            else "asyncio (uvloop not available)")
    return [("pydantic", core), ("event loop", loop)]


def version_lines(explicit: str | None = None) -> list[tuple[str, str]]:
    """(name, version) pairs for `dagnats version`."""
    zipapp = sys.argv[0] if sys.argv and sys.argv[0].endswith(("dagnats", ".pyz")) else ""
    return [
        ("dagnats", dagnats_version() + (f" ({zipapp})" if zipapp else "")),
        ("nats-server", nats_server_line(explicit)),
        ("nats-py", package_version("nats-py")),
        *compiled_lines(),
        ("python", f"{platform.python_implementation()} {platform.python_version()} "
                   f"({sys.executable})"),
        ("platform", f"{platform.system()} {platform.release()} {platform.machine()}"),
    ]
