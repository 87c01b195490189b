"""The whole workflow, end to end, on a reduced smoke config in a fresh copy of the repo.

One module-scoped run of `snakemake --cores 2` (with a socket guard) feeds several checks:
the final table exists and its numbers come from the runs; no network was touched; a
second run does nothing; changing one value re-runs only what depends on it; the run left
DVC's lock current under its own config; a code edit re-runs its rule and what follows;
`dvc repro` agrees with Snakemake, and a clone that `dvc pull`s plans nothing; a
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
    """Every file's digest; Snakemake's empty `.snakemake_timestamp` marks are bookkeeping,
    which DVC does not version (.dvcignore)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".snakemake_timestamp"
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


def dvc(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "dvc"), *args], workspace)


def dvc_clean(workspace: Path) -> bool:
    out = dvc(workspace, "status")
    return out.returncode == 0 and out.stdout.strip() in ("", "Data and pipelines are up to date.")


def test_one_run_is_versioned_under_its_own_config(finished):
    """`snakemake` alone leaves DVC's lock current (no second command), with every section of
    the config the run merged as its params."""
    assert (finished / "dvc.lock").is_file()
    assert dvc_clean(finished), dvc(finished, "status").stdout
    recorded = yaml.safe_load((finished / "config/run.yaml").read_text())
    assert recorded["workflow"]["configfiles"] == []
    assert {"device", "report", "dataset", "detection"} <= set(recorded)
    locked = yaml.safe_load((finished / "dvc.lock").read_text())["stages"]["workflow"]["params"]["config/run.yaml"]
    assert locked["detection"]["epochs"] == REDUCED["detection"]["epochs"]
    assert locked["report"]["grid_images"] == REDUCED["report"]["grid_images"]
    shown = dvc(finished, "metrics", "show")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line.startswith("results/headline/")]
    header = shown.stdout.splitlines()[0].split()
    assert [r[0].rsplit("/", 1)[1] for r in rows] == ["none.json", "xsyn-a.json"], shown.stdout
    assert header == ["Path", "p50.AP", "p50.dAP"], shown.stdout  # rows = arms, columns = shares


def test_code_edit_reruns_its_rule_and_what_follows(finished):
    """A comment in CAR's module: synthesis and everything after it, nothing upstream; DVC sees
    the stage changed."""
    car = finished / "xsyn/synthesis/car.py"
    original = car.read_bytes()
    car.write_bytes(original + b"\n# an edit\n")
    try:
        out = snakemake(finished, "-n")
        jobs = planned_jobs(out.stdout + out.stderr)
        assert out.returncode == 0, out.stderr[-3000:]
        for rule in ("synthesize_shard", "gather", "train_detector", "evaluate", "aggregate"):
            assert rule in jobs, jobs
        assert jobs["train_detector"] == 1  # the xsyn-a run; real-only reads no synthetic data
        for rule in ("phantom", "prepare", "finetune", "candidates", "generator_samples"):
            assert rule not in jobs, jobs
        status = dvc(finished, "status").stdout
        assert "workflow" in status and "modified:" in status and "xsyn" in status, status
    finally:
        car.write_bytes(original)
    assert dvc_clean(finished)
    assert "Nothing to be done" in (lambda o: o.stdout + o.stderr)(snakemake(finished, "-n"))


def test_dvc_repro_agrees_and_a_clone_pulls_instead_of_recomputing(finished, tmp_path):
    before = tree_digest(finished / "data/synthetic")
    again = dvc(finished, "repro")
    assert again.returncode == 0 and "didn't change" in again.stdout + again.stderr, again.stdout[-3000:]
    assert tree_digest(finished / "data/synthetic") == before  # nothing redone
    remote = tmp_path / "remote"
    assert dvc(finished, "remote", "modify", "--local", "local", "url", str(remote)).returncode == 0
    pushed = dvc(finished, "push")
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    subprocess.run(["git", "add", "-A"], cwd=finished, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "lock"],
                   cwd=finished, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(finished), str(clone)], check=True)
    assert dvc(clone, "remote", "modify", "--local", "local", "url", str(remote)).returncode == 0
    pulled = dvc(clone, "pull")
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    for folder in ("data/phantom", "results/models/generator", "data/synthetic"):
        assert tree_digest(clone / folder) == tree_digest(finished / folder), folder
    plan = snakemake(clone, "-n")
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]
    assert dvc_clean(clone)
    # the clone keeps Snakemake's records: a code edit there still re-runs its rules
    car = clone / "xsyn/synthesis/car.py"
    car.write_bytes(car.read_bytes() + b"\n# an edit\n")
    assert "synthesize_shard" in planned_jobs((lambda o: o.stdout + o.stderr)(snakemake(clone, "-n")))


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
