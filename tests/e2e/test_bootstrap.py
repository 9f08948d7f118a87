"""bin/dagnats on a fresh clone: two first commands at once install once and both work."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.e2e.harness import DAGNATS, ROOT


def test_two_first_runs_at_once_share_one_install(tmp_path: Path) -> None:
    env = {**os.environ, "DAGNATS_VENV": str(tmp_path / "venv")}
    runs = [subprocess.Popen([DAGNATS, "workflow", "validate",
                              str(ROOT / "examples" / "hello-pipeline" / "pipeline.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    results = [(proc.wait(timeout=240), *proc.communicate()) for proc in runs]
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == "Valid: hello-pipeline (version 1.0, 3 steps)"
    installs = sum(err.count("creating") for _, _, err in results)
    assert installs == 1
    again = subprocess.run([DAGNATS, "workflow", "validate", str(ROOT / "tests/e2e/slow.json")],
                           capture_output=True, text=True, env=env, timeout=60)
    assert again.returncode == 0 and again.stderr == ""  # no install the second time
