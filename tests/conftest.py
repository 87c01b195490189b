"""Shared test setup: offline environment, bounded threads, repo paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import xsyn  # noqa: F401  (sets the offline variables before anything else is imported)

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True)
def _project_local_cache(tmp_path_factory, monkeypatch):
    """Keep ultralytics/xsyn caches out of the user's home and the repo."""
    cache = tmp_path_factory.getbasetemp() / "xsyn-cache"
    monkeypatch.setenv("XSYN_CACHE", str(cache))
