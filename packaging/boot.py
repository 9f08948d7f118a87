"""The first code the `dagnats` zipapp runs, before shiv's bootstrap and before any import.

packaging/build copies this file to `_dagnats_boot.py` at the root of the archive with TARGET
filled in. It must import only the standard library and parse on old Pythons, because its job
is to say clearly when the interpreter cannot run this build:

1. the interpreter: compiled wheels (pydantic-core) tie the file to the CPython minor versions
   it was built for and to one OS/CPU, so a mismatch gets one line naming the Python needed
   and the build to use;
2. the extraction root: SHIV_ROOT when set, else the user cache dir (~/.cache/dagnats/zipapp),
   never the current directory; an unwritable or noexec root gets one line naming SHIV_ROOT;
3. repair: an extraction missing its core files is removed, so shiv unpacks it again;
4. cleanup: extractions of other dagnats builds in that root are removed unless a running
   process still uses them (each process holds a shared flock on `.<extraction>_inuse`).

Then it hands over to shiv (`_bootstrap.bootstrap()`), which extracts once and runs dagnats.
"""

# ruff: noqa: UP031, UP036 - %-formatting and version checks on purpose: it must run on any Python 3

import os
import platform
import re
import shutil
import sys

TARGET: dict = {}  # filled in by packaging/build

ROOT_ENV = "SHIV_ROOT"
EXIT_UNUSABLE = 2
EXTRACTION = re.compile(r"^.+_[0-9a-f]{64}$")
_held = []  # open in-use lock files: they must live as long as the process


def fail(message):
    """Print one line and exit: nothing dagnats-specific has run yet."""
    sys.stderr.write("dagnats: " + message + "\n")
    sys.exit(EXIT_UNUSABLE)


def interpreter_problem():
    """Why this interpreter cannot run this build, or "" when it can."""
    wants = TARGET.get("pythons", [])
    want = wants[0] if wants else "3"
    have = "%d.%d" % sys.version_info[:2]
    where = "%s %s (%s)" % (platform.python_implementation(), platform.python_version(),
                            sys.executable or "unknown interpreter")
    if sys.version_info[:2] < (3, 11):
        return ("dagnats needs CPython 3.11 or newer and was started by %s; run it as "
                "`python%s %s`" % (where, want, sys.argv[0]))
    if sys.implementation.name != "cpython" or have not in wants:
        return ("this file is built for CPython %s and was started by %s; run it as "
                "`python%s %s`, or use a dagnats file built for Python %s "
                "(packaging/build --python %s)"
                % (" or ".join(wants), where, want, sys.argv[0], have, have))
    machine = platform.machine().lower().replace("amd64", "x86_64")
    if machine == "arm64" and sys.platform.startswith("linux"):
        machine = "aarch64"
    if not sys.platform.startswith(TARGET.get("os", "")) or machine != TARGET.get("machine"):
        return ("this file is built for %s %s (%s) but this machine is %s %s; use a dagnats "
                "file built for it (packaging/build --platform <tag>)"
                % (TARGET.get("os"), TARGET.get("machine"), TARGET.get("platform"),
                   sys.platform, machine))
    return ""


def default_root():
    """The user cache dir, as platformdirs names it, plus /zipapp."""
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        cache = os.path.join(home, "Library", "Caches")
    else:
        cache = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(home, ".cache")
    return os.path.join(cache, "dagnats", "zipapp")


def prepare_root(root, extraction):
    """Make sure the root can hold (and run) the extraction; exit with one line otherwise."""
    hint = ("set SHIV_ROOT to a writable directory on a filesystem that allows executables, "
            "such as SHIV_ROOT=/var/tmp/dagnats-$USER")
    if os.path.isdir(os.path.join(extraction, "site-packages")):
        return  # extracted already: reading is all it takes
    try:
        os.makedirs(root, exist_ok=True)
        probe = os.path.join(root, ".write-probe-%d" % os.getpid())
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        fail("cannot unpack into %s (%s); %s" % (root, exc.strerror or exc, hint))
    noexec = getattr(os, "ST_NOEXEC", 0)
    if noexec and os.statvfs(root).f_flag & noexec:
        fail("%s is on a noexec filesystem, so nats-server and compiled modules could not run "
             "from it; %s" % (root, hint))


def lock_file(root, name):
    """The in-use lock file of one extraction."""
    return os.path.join(root, ".%s_inuse" % name)


def mark_in_use(root, name):
    """Hold a shared lock on our extraction for the life of this process (best effort)."""
    try:
        import fcntl

        fd = os.open(lock_file(root, name), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_SH)
    except (ImportError, OSError):
        return
    _held.append(fd)


def remove_old_extractions(root, ours):
    """Delete the extractions of other dagnats builds that no running process holds."""
    try:
        import fcntl

        entries = os.listdir(root)
    except (ImportError, OSError):
        return
    for name in entries:
        path = os.path.join(root, name)
        if name == ours or not EXTRACTION.match(name) or name.endswith("_" + TARGET["build_id"]):
            continue
        if not os.path.isdir(os.path.join(path, "site-packages", "dagnats")):
            continue  # another shiv application sharing SHIV_ROOT: not ours to delete
        try:
            fd = os.open(lock_file(root, name), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(path, ignore_errors=True)
            for leftover in (lock_file(root, name), os.path.join(root, ".%s_lock" % name)):
                if os.path.exists(leftover):
                    os.remove(leftover)
        except OSError:
            pass  # in use by a running process of that build: leave it
        finally:
            os.close(fd)


def repair_if_damaged(extraction):
    """Remove a partly deleted extraction, so shiv (which only checks that the folder exists)
    unpacks it afresh instead of failing on a missing file."""
    site = os.path.join(extraction, "site-packages")
    if not os.path.isdir(extraction):
        return
    for needed in (("dagnats", "__init__.py"), ("dagnats", "cli", "main.py")):
        if not os.path.isfile(os.path.join(site, *needed)):
            shutil.rmtree(extraction, ignore_errors=True)
            return


def main():
    """Check, prepare, clean up, then run dagnats through shiv's bootstrap."""
    problem = interpreter_problem()
    if problem:
        fail(problem)
    root = os.path.abspath(os.path.expanduser(os.environ.get(ROOT_ENV) or default_root()))
    name = "%s_%s" % (os.path.basename(os.path.realpath(sys.argv[0])), TARGET["build_id"])
    repair_if_damaged(os.path.join(root, name))
    prepare_root(root, os.path.join(root, name))
    os.environ[ROOT_ENV] = root  # shiv reads it, and supervised children inherit it
    mark_in_use(root, name)
    remove_old_extractions(root, name)
    import _bootstrap

    _bootstrap.bootstrap()
