"""The store layout version: newer builds read older stores, older builds refuse newer ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dagnats.errors import ServeError
from dagnats.server.store_version import (
    FILE_NAME,
    STORE_VERSION,
    StoreTooNew,
    prepare_store,
    read_store_version,
)


def test_a_new_data_dir_has_no_version_until_prepared(tmp_path: Path) -> None:
    assert read_store_version(tmp_path) is None
    assert prepare_store(tmp_path) is None
    assert read_store_version(tmp_path) == STORE_VERSION
    assert json.loads((tmp_path / FILE_NAME).read_text())["written_by"].startswith("dagnats ")


def test_a_store_from_before_versioning_is_version_0_and_is_migrated(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    assert read_store_version(tmp_path) == 0
    assert prepare_store(tmp_path) == 0
    assert read_store_version(tmp_path) == STORE_VERSION


def test_a_newer_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text(json.dumps({"store_version": STORE_VERSION + 1}))
    with pytest.raises(StoreTooNew) as info:
        prepare_store(tmp_path)
    assert "\n" not in info.value.message
    assert f"layout version {STORE_VERSION + 1}" in info.value.message
    assert info.value.exit_code == 3
    assert read_store_version(tmp_path) == STORE_VERSION + 1


def test_a_damaged_version_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(ServeError, match="restore it from a backup"):
        prepare_store(tmp_path)
