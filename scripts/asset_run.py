"""What the asset-making scripts (pretrain_tiny_generator.py, pretrain_detector_init.py)
share: they run ``xsyn`` commands as the workflow would, and name the commit they ran from
in the model card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def xsyn(*args: str) -> None:
    cmd = [sys.executable, "-m", "xsyn", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"
