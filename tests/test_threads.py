"""Thread policy (issue 20): jobs use the threads they are given, and nothing spins.

Snakemake exports OMP_NUM_THREADS = a rule's ``threads:``; xsyn pins it and the passive
OpenMP wait policy before torch loads, and holds ultralytics (which resets torch to
``min(8, cpu_count - 1)`` threads for CPU work) to it. The rules give detectors one thread
(torch's results depend on the thread count; one is what ultralytics used before) and hold
the ``gpu`` resource only where jobs run on a GPU, so that CPU jobs run side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xsyn import env

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


@pytest.mark.parametrize(("value", "want"), [("3", 3), (" 4,2", 4), ("0", 1)])
def test_job_threads_reads_omp_num_threads(monkeypatch, value, want):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert env.job_threads() == want


@pytest.mark.parametrize("value", ["", "many", None])
def test_job_threads_defaults_to_the_cores_this_process_may_use(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert env.job_threads() == env.available_cores() == len(os.sched_getaffinity(0))


def fresh_python(code: str, **variables: str | None) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    base.update({k: v for k, v in variables.items() if v is not None})
    out = subprocess.run([sys.executable, "-c", code], env=base, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


PROBE = "import os, xsyn, torch; print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'])"


def test_importing_xsyn_sets_threads_and_passive_waits_before_torch_loads():
    assert fresh_python(PROBE, OMP_NUM_THREADS="1").split() == ["1", "1", "PASSIVE"]
    cores = env.available_cores()
    assert fresh_python(PROBE).split() == [str(cores), str(cores), "PASSIVE"]
    # the user's own choice wins
    assert fresh_python(PROBE, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="ACTIVE").split()[-1] == "ACTIVE"


def test_gpu_visible():
    assert not env.gpu_visible("cpu")
    assert env.gpu_visible("cuda")
    assert env.gpu_visible("cuda:1")


def test_gpu_visible_auto_respects_hidden_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not env.gpu_visible("auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert not env.gpu_visible("auto")


def yolo_rectangles(root: Path, n: int = 8, size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        for i in range(n if split == "train" else 2):
            img = np.full((size, size, 3), 200, np.uint8)
            w, h = (int(v) for v in rng.integers(12, 30, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            img[y:y + h, x:x + w] = (30, 60, 220)
            Image.fromarray(img).save(root / split / "images" / f"{i}.png")
            (root / split / "labels" / f"{i}.txt").write_text(
                f"0 {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: train/images\nval: val/images\nnames: {{0: Gun}}\n")
    return data


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_detector_trains_and_predicts_with_the_job_threads(tmp_path, monkeypatch, restore_torch_threads):
    from xsyn.detection.train import build_model

    env.prepare_ultralytics()
    from ultralytics.utils import NUM_THREADS

    want = NUM_THREADS + 1  # what ultralytics would not pick by itself
    monkeypatch.setenv("OMP_NUM_THREADS", str(want))
    data = yolo_rectangles(tmp_path / "rects")
    seen: dict[str, set[int]] = {"train": set(), "val": set(), "predict": set()}

    def record(stage):
        return lambda _: seen[stage].add(torch.get_num_threads())

    model = build_model("yolov8n.yaml")
    model.add_callback("on_train_batch_start", record("train"))
    model.add_callback("on_val_batch_start", record("val"))
    model.train(data=str(data), epochs=1, imgsz=64, batch=4, workers=0, device="cpu", seed=0,
                deterministic=True, amp=False, plots=False, verbose=False,
                project=str(tmp_path / "runs"), name="t", exist_ok=True)
    trained = build_model(model.trainer.last)
    trained.add_callback("on_predict_batch_start", record("predict"))
    list(trained.predict(source=str(tmp_path / "rects" / "val" / "images"), imgsz=64, device="cpu",
                         stream=True, verbose=False))
    assert seen == {"train": {want}, "val": {want}, "predict": {want}}


def planned_jobs(workspace: Path, *args: str) -> list[dict]:
    """Rule, wildcards, threads and resources of every job of a dry run."""
    envvars = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([SNAKEMAKE, "-n", *args], cwd=workspace, env=envvars, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        threads = re.search(r"^\s+threads: (\d+)", block, re.M)
        gpu = re.search(r"^\s+resources: .*\bgpu=(\d+)", block, re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        jobs.append({"rule": head.group(1), "threads": int(threads.group(1)) if threads else 1,
                     "gpu": int(gpu.group(1)) if gpu else 0,
                     "wildcards": wildcards.group(1) if wildcards else ""})
    return jobs


@pytest.fixture(scope="module")
def clean_checkout(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("plan")
    for name in ("Snakefile", "workflow", "config", "assets"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        else:
            (dest / name).write_bytes(src.read_bytes())
    return dest


def test_rules_give_detectors_one_thread_and_torch_jobs_the_cores_on_cpu(clean_checkout):
    jobs = planned_jobs(clean_checkout, "--cores", "4", "--config", "device=cpu")
    by_rule: dict[str, set[tuple[int, int]]] = {}
    for job in jobs:
        key = job["rule"] + ("[tip]" if "method=tip" in job["wildcards"] else "")
        by_rule.setdefault(key, set()).add((job["threads"], job["gpu"]))
    assert by_rule["train_detector"] == {(1, 0)}
    assert by_rule["evaluate"] == {(1, 0)}
    assert by_rule["finetune"] == {(4, 0)}
    assert by_rule["synthesize_shard"] == {(4, 0)}
    assert by_rule["synthesize_shard[tip]"] == {(1, 0)}


def test_torch_threads_lets_torch_jobs_run_side_by_side(clean_checkout):
    jobs = planned_jobs(clean_checkout, "--cores", "4", "--config", "device=cpu", "torch_threads=1")
    threads = {j["rule"]: j["threads"] for j in jobs if j["rule"] in ("finetune", "synthesize_shard", "train_detector")}
    assert threads == {"finetune": 1, "synthesize_shard": 1, "train_detector": 1}


def test_gpu_jobs_take_turns_at_the_gpu(clean_checkout):
    jobs = planned_jobs(clean_checkout, "--cores", "4", "--config", "device=cuda")
    gpu = {j["rule"] for j in jobs if j["gpu"] == 1}
    assert {"finetune", "synthesize_shard", "train_detector", "evaluate"} <= gpu
    assert all(j["gpu"] == 0 for j in jobs if "method=tip" in j["wildcards"])
