"""`serve --leafnode-remote`: bad input is one line and exit 2, before anything starts."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_cli_offline import invoke, one_error_line


def test_serve_refuses_a_bad_leaf_remote(tmp_path: Path) -> None:
    line = one_error_line(invoke("serve", "--data-dir", str(tmp_path), "--leafnode-remote",
                                 "hub:7422"), 2)
    assert "not a leaf node URL" in line
    line = one_error_line(invoke("serve", "--data-dir", str(tmp_path), "--nats-url",
                                 "nats://127.0.0.1:4222", "--leafnode-remote",
                                 "nats-leaf://hub:7422"), 2)
    assert "--leafnode-remote applies to the nats-server serve starts" in line
