"""benchmarks/gpu_check.sh runs end to end in its CPU dry mode (tiny shapes), so the GPU check
is known to work before a GPU is lent (issue 20)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_prints_the_table(tmp_path):
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry", "--json", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| what | batch | throughput | TFLOP/s")
    body = "\n".join(table)
    for what in ("CAR + BOM on", "CAR + BOM off", "diffusers StableDiffusionGLIGENPipeline", "fine-tune"):
        assert what in body, what
    rows = json.loads(out.read_text())
    first = rows["synthesis"][0]
    assert first["batch"] == 1 and set(first["images_per_s"]) == {"on", "off", "diffusers"}
    assert all(v > 0 for v in first["images_per_s"].values())
    assert first["unet_tflops_per_image"] > 0  # the FLOP counter ran
    (ft,) = rows["finetune"]
    assert ft["it_per_s"] > 0 and ft["tflops_per_step"] > 0


def test_gpu_check_refuses_without_a_gpu_unless_dry():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--dry" in proc.stderr
