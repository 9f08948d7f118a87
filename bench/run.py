#!/usr/bin/env python3
"""`bench/run.py [--quick] [--json] ...`: the same as `dagnats bench`, from this checkout.

The implementation lives in `dagnats.bench` so that the shipped executable has it too; this
wrapper only makes sure the checkout's environment exists (as bin/dagnats does) and runs it.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bin"))
from bootstrap import exec_in_env  # noqa: E402

exec_in_env("runtime", ["-m", "dagnats", "bench", *sys.argv[1:]])
