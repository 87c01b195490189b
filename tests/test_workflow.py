"""The whole workflow, end to end, on a reduced smoke config in a fresh copy of the repo.

One module-scoped run of `snakemake --cores 2` (with a socket guard) feeds several checks:
the final table exists and its numbers come from the runs; no network was touched; a
second run does nothing; changing one value re-runs only what depends on it; `dvc repro`
agrees with Snakemake and `dvc push`/`pull` restore the artifacts in a fresh clone; a
workflow killed during fine-tuning resumes to the same results.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workspace import (
    BIN,
    REPO,
    copy_repo,
    git_commit_all,
    planned_jobs,
    run,
    snakemake,
    workflow_env,
)

from xsyn.config import deep_merge

pytestmark = pytest.mark.slow

# Small enough for CI (minutes on 2 cores), but every stage runs for real.
REDUCED = yaml.safe_load((REPO / ".test" / "config-smoke" / "config.yaml").read_text())


def make_workspace(dest: Path) -> Path:
    """A fresh copy of the repository (as a clone would have it) with the reduced config as its
    smoke profile (so `snakemake` and `dvc repro` without --configfile run it)."""
    copy_repo(dest)
    smoke = yaml.safe_load((dest / "config/smoke.yaml").read_text())
    (dest / "config/smoke.yaml").write_text(yaml.safe_dump(deep_merge(smoke, REDUCED), sort_keys=False))
    git_commit_all(dest)
    return dest


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("workflow"))
    t0 = time.time()
    out = snakemake(ws)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-8000:]
    print(f"reduced smoke workflow: {time.time() - t0:.0f} s")
    return ws


def test_final_table_numbers_come_from_the_runs(finished):
    table = (finished / "results/tables/main.md").read_text()
    assert "real only" in table and "xsyn-a" in table
    rows = pd.read_csv(finished / "results/tables/main.csv")
    metric_files = [p for p in sorted((finished / "results/metrics").rglob("*.json"))
                    if ".predictions." not in p.name]
    assert len(metric_files) == 2  # 2 sources × 1 share × 1 seed
    for path in metric_files:
        m = json.loads(path.read_text())
        run_dir = finished / "results/runs" / path.relative_to(finished / "results/metrics").with_suffix("")
        assert (run_dir / "weights.pt").is_file()
        row = rows[(rows["source"] == m["run"]["source"]) & (rows["share"] == m["run"]["share"])]
        assert len(row) == 1
        assert int(row["n_seeds"].iloc[0]) == 1
        ap_percent = 100 * m["splits"]["test"]["stats"]["AP"]
        assert abs(float(row["AP_mean"].iloc[0]) - ap_percent) < 1e-3


def test_no_network_connection(finished):
    log = finished / "network.log"
    assert not log.exists() or log.read_text() == "", log.read_text()


def test_second_run_does_nothing(finished):
    out = snakemake(finished, "-n")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_one_value_reruns_only_its_dependents(finished):
    changed = finished / "changed.yaml"
    changed.write_text("detection:\n  epochs: 2\n")
    out = snakemake(finished, "-n", "--configfile", str(changed))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "train_detector" in text and "aggregate" in text
    for untouched in ("rule phantom", "rule prepare", "rule finetune", "rule synthesize_shard"):
        assert untouched not in text


def plan_with(workspace: Path, overlay: str) -> tuple[dict[str, int], str]:
    """What a dry run plans with ``overlay`` (YAML) over the finished run's config."""
    path = workspace / "grown.yaml"
    path.write_text(overlay)
    out = snakemake(workspace, "-n", "--configfile", str(path))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    return planned_jobs(text), text


def planned_outputs(text: str, rule: str) -> list[str]:
    """The output paths of every planned job of ``rule`` in a dry run's log."""
    found = []
    for block in text.split(f"rule {rule}:")[1:]:
        for line in block.splitlines():
            if line.strip().startswith("output:"):
                found.append(line.split("output:", 1)[1].strip())
                break
    return found


def test_adding_a_seed_plans_only_the_new_seed(finished):
    """Growing the matrix adds jobs and redoes none: rules pass a job its own seed, share and
    source, never the lists of all of them."""
    jobs, text = plan_with(finished, "detection:\n  seeds: [0, 1]\n")
    assert jobs == {"train_detector": 2, "evaluate": 2, "aggregate": 1, "compare": 1, "config_snapshot": 1,
                    "all": 1}, jobs
    outputs = planned_outputs(text, "train_detector") + planned_outputs(text, "evaluate")
    assert len(outputs) == 4 and all("/s1" in o for o in outputs), outputs


def test_adding_a_method_plans_only_its_shards_and_runs(finished):
    jobs, text = plan_with(finished, "synthesis:\n  methods: [xsyn-a, xsyn-m]\n"
                                     "detection:\n  sources: [none, xsyn-a, xsyn-m]\n")
    assert jobs == {"synthesize_shard": 2, "gather": 1, "grid_synthetic": 1, "train_detector": 1, "evaluate": 1,
                    "aggregate": 1, "compare": 1, "config_snapshot": 1, "all": 1}, jobs
    for rule in ("synthesize_shard", "gather", "grid_synthetic", "train_detector", "evaluate"):
        assert all("xsyn-m" in o for o in planned_outputs(text, rule)), rule


def test_dvc_repro_agrees_and_push_pull_restore(finished, tmp_path):
    dvc = str(BIN / "dvc")
    before = tree_digest(finished / "data/synthetic")
    out = run([dvc, "repro"], finished)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert tree_digest(finished / "data/synthetic") == before  # snakemake had nothing to redo
    assert run([dvc, "status"], finished).stdout.strip() in ("", "Data and pipelines are up to date.")
    again = run([dvc, "repro"], finished)
    assert again.returncode == 0 and "didn't change" in again.stdout + again.stderr
    assert run([dvc, "push"], finished).returncode == 0
    subprocess.run(["git", "add", "-A"], cwd=finished, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"],
                   cwd=finished, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(finished), str(clone)], check=True)
    run([dvc, "remote", "modify", "local", "url", str(finished / ".dvc-storage")], clone)
    pulled = run([dvc, "pull"], clone)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    for folder in ("data/phantom", "results/models/generator", "data/synthetic"):
        assert tree_digest(clone / folder) == tree_digest(finished / folder), folder


def test_killed_during_finetune_resumes_to_the_same_result(finished, tmp_path):
    ws = make_workspace(tmp_path / "killed")
    proc = subprocess.Popen([str(BIN / "snakemake"), "--cores", "2"], cwd=ws, env=workflow_env(ws),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    work = ws / "results/models/generator.work"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if work.exists() and any((work / "checkpoints").glob("checkpoint-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the workflow ended before a fine-tuning checkpoint appeared"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (ws / "results/models/generator").exists()  # nothing half-written
    # A hard kill leaves Snakemake's lock behind; --unlock releases it (documented in the README).
    assert snakemake(ws, "--unlock").returncode == 0
    out = snakemake(ws)
    assert out.returncode == 0, out.stderr[-5000:]
    gen = "results/models/generator"
    assert tree_digest(ws / gen / "unet") == tree_digest(finished / gen / "unet")
    a = json.loads((ws / "data/synthetic/phantom/xsyn-a/annotations.json").read_text())
    b = json.loads((finished / "data/synthetic/phantom/xsyn-a/annotations.json").read_text())
    assert a["annotations"] == b["annotations"]
    leftovers = [p for p in ws.rglob("*.tmp") if ".snakemake" not in p.parts]
    assert not leftovers, leftovers
