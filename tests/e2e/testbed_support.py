"""Import testbed/vm.py (a script folder, not a package) for the e2e tests and conftest."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "testbed") not in sys.path:
    sys.path.insert(0, str(ROOT / "testbed"))

import vm as testbed  # noqa: E402

__all__ = ["ROOT", "testbed"]
