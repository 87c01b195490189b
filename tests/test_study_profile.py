"""The study profile: valid, one file, and its DAG plans what DESIGN §8 asks (without running)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xsyn.config import load_config
from xsyn.data.contract import train_split
from xsyn.methods import CONTROLS, METHODS, REAL_ONLY, parse_sources

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def test_study_profile_validates_and_is_one_file():
    cfg = load_config(["study"])
    assert cfg["profile"] == "study"
    link = REPO / "config" / "study.yaml"
    assert link.is_symlink() and link.resolve() == (REPO / "xsyn/profiles/study.yaml").resolve()
    det = cfg["detection"]
    assert len(det["seeds"]) >= 3 and {5, 10, 25} <= set(det["shares"])
    assert set(det["shares"]) | set(det["ablations"]["shares"]) <= set(cfg["dataset"]["subset_shares"])
    arms = set(det["sources"]) | set(det["ablations"]["sources"])
    for arm in arms:
        assert all(p in METHODS or p in CONTROLS for p in parse_sources(arm)) or arm == REAL_ONLY, arm
    # the arms: real-only, real-repeat, TIP, plain GLIGEN, Xsyn-M, Xsyn-A (± CAR, ± BOM), budget
    assert {"none", "real-repeat", "tip", "gligen-plain", "xsyn-m", "xsyn-a", "xsyn-a-nocar",
            "xsyn-a-nobom", "budget"} <= arms
    assert det["mix"]["equal_steps"] and cfg["synthesis"]["per_share"]
    assert (REPO / det["budget"]["config"]).is_file()
    for model in det["models"]:
        assert model.endswith(".pt") and (REPO / model).is_file(), model  # the shipped initialisation
    n = cfg["phantom"]["num_images"]
    assert round(n * cfg["dataset"]["test_fraction"]) >= 500  # a test set of >= 500 scans


@pytest.fixture(scope="module")
def study_plan(tmp_path_factory) -> str:
    """`snakemake -n -p` of the study profile in a clean copy of the checkout."""
    root = tmp_path_factory.mktemp("study")
    for name in ("Snakefile", "workflow", "config", "assets", "xsyn"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, root / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "2", "--configfile", "config/study.yaml"],
                         cwd=root, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def commands(plan: str, program: str) -> list[str]:
    return [line for line in plan.splitlines() if f"xsyn {program} " in line]


def fragment(command: str) -> dict:
    """The ``--config-json`` a planned command is handed."""
    argv = shlex.split(command.removeprefix("Shell command: ").split(" 2>")[0])
    return json.loads(argv[argv.index("--config-json") + 1])


def test_one_generator_per_share_from_its_own_subset(study_plan):
    cfg = load_config(["study"])
    finetunes = commands(study_plan, "finetune")
    assert len(finetunes) == len(cfg["detection"]["shares"])
    for share in cfg["detection"]["shares"]:
        tag = f"{share:g}"
        assert any(f"generator/p{tag} " in c and fragment(c)["finetune"]["train_split"] == train_split(share)
                   for c in finetunes), share
    # every synthetic set of a share is made from that share's subset (TIP too), with its generator
    for c in commands(study_plan, "synthesize"):
        share = re.search(rf"synthetic-shards/{cfg['dataset']['name']}/p([\d.]+)/", c).group(1)
        assert fragment(c)["synthesis"]["source_split"] == train_split(float(share)), c
        if "--method tip" not in c:
            assert f"--generator results/models/generator/p{share} " in c, c
            assert f"/{train_split(float(share))}/shard-" in c  # the candidates of that subset


def test_every_arm_and_control_is_trained_and_compared(study_plan):
    cfg = load_config(["study"])
    det = cfg["detection"]
    trains = commands(study_plan, "train-detector")
    n_arms = len(det["sources"]) * len(det["shares"]) + len(det["ablations"]["sources"]) * len(det["ablations"]["shares"])
    assert len(trains) == n_arms * len(det["seeds"]) * len(det["models"])
    for c in trains:
        share = re.search(r"--share ([\d.]+) ", c).group(1)
        assert f"--synthetic-root data/synthetic/{cfg['dataset']['name']}/p{share} " in c
        assert ("--budget data/budget" in c) == ("--source budget " in c)
    assert "xsyn phantom --out data/raw/budget" in study_plan  # the generator's pre-training scans
    assert "xsyn prepare --source data/raw/budget --out data/budget" in study_plan
    compare = commands(study_plan, "compare")
    assert len(compare) == 1 and compare[0].count("/s0.json") == n_arms * len(det["models"])  # its matrix only
