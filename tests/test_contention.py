"""benchmarks/contention.py: policies as the workflow applies them, and one short real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
import contention  # noqa: E402


def test_policy_threads_match_the_rules():
    # old: every torch rule min(cores, 8); new: detectors 1 (workflow/rules/common.smk)
    assert contention.policy_threads("old", "detector", 2) == 2
    assert contention.policy_threads("new", "detector", 16) == 1
    for workload in ("finetune", "synthesis"):
        assert contention.policy_threads("new", workload, 2) == 2
        assert contention.policy_threads("new", workload, 16) == 8


def test_worker_env_drops_the_callers_openmp_settings(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "1000")
    env = contention.worker_env(3)
    assert env["OMP_NUM_THREADS"] == "3"
    assert "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env


@pytest.mark.slow
def test_short_run_prints_both_policies(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "contention.py"), "--only", "synthesis",
         "--no-side-by-side", "--synthesis-steps", "1", "--repeats", "1", "--bar", "0",
         "--json", str(out)],
        cwd=REPO, env={**os.environ}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| job | policy |" in proc.stdout
    rows = json.loads(out.read_text())["contention"]
    assert [(r["workload"], r["policy"]) for r in rows] == [("synthesis", "old"), ("synthesis", "new")]
    assert all(r["idle"] > 0 and r["busy"] > 0 for r in rows)
    assert all(r["torch_threads"] == r["omp_threads"] for r in rows)
    # old: OpenMP loaded with its default (spinning) waits; new: xsyn made them passive first
    assert [r["waits"] for r in rows] == ["default", "PASSIVE"]
