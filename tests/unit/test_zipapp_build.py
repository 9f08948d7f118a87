"""packaging/zipbuild.py: the pip options for another platform, and the lock file's pins."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_zipbuild():
    """packaging/zipbuild.py (packaging/ is not a package: `packaging` is a PyPI name)."""
    spec = importlib.util.spec_from_file_location("zipbuild", ROOT / "packaging" / "zipbuild.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zipbuild"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


zipbuild = load_zipbuild()


def test_manylinux_tags_are_expanded_down_to_manylinux2014() -> None:
    tags = zipbuild.platform_tags("manylinux_2_28_aarch64")
    assert tags[0] == "manylinux_2_28_aarch64"
    assert "manylinux_2_17_aarch64" in tags and tags[-1] == "manylinux2014_aarch64"
    assert len(tags) == 28 - 17 + 2


def test_macos_tags_include_universal2_and_older_releases() -> None:
    tags = zipbuild.platform_tags("macosx_13_0_arm64")
    assert tags[:2] == ["macosx_13_0_arm64", "macosx_13_0_universal2"]
    assert "macosx_11_0_arm64" in tags and "macosx_10_9_arm64" in tags


def test_pip_options_pin_the_interpreter() -> None:
    target = zipbuild.Target("manylinux_2_28_x86_64", "3.12")
    args = zipbuild.pip_target_args(target)
    assert args[:7] == ["--only-binary=:all:", "--implementation", "cp", "--python-version",
                        "3.12", "--abi", "cp312"]
    assert (target.os_name, target.machine) == ("linux", "x86_64")
    assert zipbuild.Target("macosx_13_0_arm64", "3.11").machine == "arm64"


def test_unknown_targets_are_refused_with_what_to_use() -> None:
    with pytest.raises(zipbuild.BuildError, match="such as manylinux_2_28_aarch64"):
        zipbuild.check_target(zipbuild.Target("win_amd64", "3.11"))
    with pytest.raises(zipbuild.BuildError, match=r"use --platform macosx_13_0_arm64$"):
        zipbuild.check_target(zipbuild.Target("macosx_11_0_arm64", "3.11"))
    with pytest.raises(zipbuild.BuildError, match=r"use --platform manylinux_2_28_aarch64$"):
        zipbuild.check_target(zipbuild.Target("manylinux_2_17_aarch64", "3.11"))
    zipbuild.check_target(zipbuild.Target("macosx_14_0_x86_64", "3.12"))  # newer: fine
    with pytest.raises(zipbuild.BuildError, match=r"supports 3\.11"):
        zipbuild.check_target(zipbuild.Target("manylinux_2_28_x86_64", "3.9"))


def test_the_lock_pins_exactly_what_runtime_txt_pins_with_hashes() -> None:
    runtime = {line.split("#")[0].strip().lower() for line in
               (ROOT / "requirements" / "runtime.txt").read_text().splitlines()} - {""}
    lock = (ROOT / "packaging" / "requirements.lock").read_text()
    hashed = re.findall(r"^(\S+==\S+)(?: \\\n    --hash=sha256:[0-9a-f]{64})+", lock, re.M)
    assert {pin.lower() for pin in hashed} == runtime, (
        "run packaging/lock after changing requirements/runtime.txt")


def test_the_boot_module_parses_on_old_pythons_and_keeps_its_marker() -> None:
    text = (ROOT / "packaging" / "boot.py").read_text()
    assert "TARGET: dict = {}  # filled in by packaging/build" in text
    assert "from __future__" not in text and ":=" not in text
    compile(text, "boot.py", "exec")


def test_python_versions_are_one_a_list_or_all() -> None:
    assert zipbuild.parse_pythons("3.12") == ["3.12"]
    assert zipbuild.parse_pythons("3.13, 3.11,3.13") == ["3.11", "3.13"]
    assert zipbuild.parse_pythons("all") == list(zipbuild.SUPPORTED_PYTHONS)
