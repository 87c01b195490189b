"""The DAG plans without running anything: default profile, paper overlay, slurm profile."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def dry_run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([SNAKEMAKE, "-n", "--quiet", "rules", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture
def clean_checkout(tmp_path) -> Path:
    """Plan in a copy, so artifacts of a local run in the repo cannot hide missing jobs."""
    for name in ("Snakefile", "workflow", "config", "assets"):
        src = REPO / name
        dest = tmp_path / name
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            dest.write_bytes(src.read_bytes())
    return tmp_path


def test_default_workflow_plans_every_stage(clean_checkout):
    out = dry_run("--cores", "all", cwd=clean_checkout)
    assert out.returncode == 0, out.stdout + out.stderr
    for rule in ("phantom", "prepare", "finetune", "synthesize_shard", "gather",
                 "train_detector", "evaluate", "aggregate"):
        assert rule in out.stdout, rule


def test_slurm_profile_plans(clean_checkout):
    out = dry_run("--profile", "workflow/profiles/slurm", cwd=clean_checkout)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "finetune" in out.stdout


def test_invalid_config_is_rejected_at_start_up(clean_checkout):
    bad = clean_checkout / "bad.yaml"
    bad.write_text("synthesis:\n  bom:\n    alpha: 3\n")
    out = dry_run("--cores", "1", "--configfile", str(bad), cwd=clean_checkout)
    assert out.returncode != 0
    assert "alpha" in out.stdout + out.stderr


def test_fractional_share_plans_end_to_end(clean_checkout):
    """A 2.5 % share: prepared as train_p2.5, trained with --share 2.5, stored under p2.5."""
    shares = clean_checkout / "shares.yaml"
    shares.write_text("dataset:\n  subset_shares: [2.5, 10]\ndetection:\n  shares: [2.5]\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "1", "--configfile", str(shares)],
                         cwd=clean_checkout, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "--share 2.5 " in out.stdout and "/p2.5/s0.json" in out.stdout
    assert "2.5, 10" in out.stdout or "[2.5, 10]" in out.stdout  # prepare is told to write the subset


def test_grids_need_no_ruleorder(clean_checkout):
    """wildcard_constraints (the registry's method names) keep grid_real and grid_synthetic apart."""
    text = (clean_checkout / "workflow/rules/report.smk").read_text()
    assert "ruleorder" not in text
    out = dry_run("--cores", "1", "results/grids/real.png", cwd=clean_checkout)
    assert out.returncode == 0 and "grid_real" in out.stdout and "grid_synthetic" not in out.stdout


def test_unknown_method_is_rejected_at_start_up(clean_checkout):
    bad = clean_checkout / "bad-method.yaml"
    bad.write_text("synthesis:\n  methods: [xsyn-z]\n")
    out = dry_run("--cores", "1", "--configfile", str(bad), cwd=clean_checkout)
    assert out.returncode != 0
    assert "xsyn-z" in out.stdout + out.stderr


def test_several_gpus_train_on_all_of_them(clean_checkout):
    """finetune.gpus: N → the job asks for N GPUs (slurm: the plugin's --gpus=N, nothing in the
    profile disagrees) and accelerate runs one process on each."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    gpus = clean_checkout / "gpus.yaml"
    gpus.write_text("device: cuda\nfinetune:\n  gpus: 4\n")
    out = subprocess.run([SNAKEMAKE, "results/models/generator", "-n", "-p", "--profile", "workflow/profiles/slurm",
                          "--configfile", str(gpus)], cwd=clean_checkout, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    job = out.stdout[out.stdout.index("rule finetune:"):]
    assert "gpu=4" in job.split("Shell command:")[0]
    assert "accelerate launch --multi_gpu --num_processes 4" in job and "-m xsyn finetune" in job
    import yaml

    profile = yaml.safe_load((clean_checkout / "workflow/profiles/slurm/config.yaml").read_text())
    for resources in [*profile["set-resources"].values(), profile["default-resources"]]:
        assert not {"gpu", "gres"} & set(resources) and "gres" not in str(resources.get("slurm_extra", ""))
    one = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "1", "results/models/generator"], cwd=clean_checkout,
                         env=env, capture_output=True, text=True)
    assert "Shell command: xsyn finetune" in one.stdout and "accelerate" not in one.stdout
    gpus.write_text("device: cpu\nfinetune:\n  gpus: 2\n")
    bad = dry_run("--cores", "1", "--configfile", str(gpus), cwd=clean_checkout)  # targets: rule all
    assert bad.returncode != 0 and "finetune.gpus" in bad.stdout + bad.stderr
