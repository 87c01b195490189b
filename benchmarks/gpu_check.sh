#!/usr/bin/env bash
# GPU check (issue 20): one table of SD-1.4-shaped synthesis and fine-tuning speed on one GPU.
#
#   bash benchmarks/gpu_check.sh              # one H100/H200: ≤ 8 min; prints the table
#   bash benchmarks/gpu_check.sh --dry        # CPU, tiny shapes, seconds (what CI runs)
#   bash benchmarks/gpu_check.sh --json out.json
#
# Synthesis: XsynPipeline (CAR+BOM on / off) vs diffusers' StableDiffusionGLIGENPipeline,
# 512 px, 50 steps, bf16, batch 1 and the best batch; fine-tuning it/s at the paper's batch;
# achieved TFLOP/s as a share of the device's bf16 peak; peak memory. Details and options:
# benchmarks/gpu_check.py --help. Random weights, nothing downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE=1 YOLO_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [[ " $* " != *" --dry "* ]] && command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
fi
# 8 minutes is the promise; the script stops trying larger batches well before.
exec timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
