"""Shared test setup: offline environment, bounded threads, repo paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before xsyn, which pins OMP_NUM_THREADS to every core when it is unset.
os.environ.setdefault("OMP_NUM_THREADS", "2")

import xsyn  # noqa: E402, F401  (offline variables and thread policy before anything else)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _project_local_cache(tmp_path_factory, monkeypatch):
    """Keep ultralytics/xsyn caches out of the user's home and the repo."""
    cache = tmp_path_factory.getbasetemp() / "xsyn-cache"
    monkeypatch.setenv("XSYN_CACHE", str(cache))
