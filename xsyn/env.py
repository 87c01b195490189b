"""Process environment: offline by default, project-local caches, one thread policy.

Everything xsyn starts (CLI, Snakemake rules, tests) imports :mod:`xsyn` first, so these
variables are set before torch, diffusers, transformers or ultralytics read them. A user can
still opt in to the network, or choose other thread settings, by exporting the variables
themselves before starting.

Threads: a job uses the threads it is given and no more, so that the jobs Snakemake runs
side by side share the cores instead of fighting over them. Snakemake exports
``OMP_NUM_THREADS`` = the rule's ``threads:`` to every job; a command started by hand uses
``OMP_NUM_THREADS`` if set, else every core it may run on. Waiting OpenMP threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) instead of spinning: where another process holds a core,
spinning threads take the time the working ones need (``benchmarks/contention.py``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

OFFLINE_VARS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
}


THREADS_VAR = "OMP_NUM_THREADS"
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a slurm allocation)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def job_threads() -> int:
    """Threads a torch job may use: ``OMP_NUM_THREADS`` (Snakemake: the rule's ``threads:``),
    else :func:`available_cores`. OpenMP's nested form ``"4,2"`` counts its first level."""
    value = os.environ.get(THREADS_VAR, "").split(",")[0].strip()
    try:
        return max(1, int(value))
    except ValueError:
        return available_cores()


def ensure_thread_env() -> None:
    """Pin the job's thread count and the passive wait policy before torch loads OpenMP.

    ``OMP_NUM_THREADS`` is written even when it only restates the default, because
    ultralytics sets it to 1 on import when it is unset, and child processes should see
    what this one uses.
    """
    os.environ[THREADS_VAR] = str(job_threads())
    for key, value in WAIT_POLICY.items():
        os.environ.setdefault(key, value)


def use_job_threads() -> int:
    """Give torch the job's thread count again (after a library reset it); returns it."""
    import torch

    threads = job_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def gpu_visible(device: str) -> bool:
    """Whether jobs configured with ``device`` (``auto``, ``cpu``, ``cuda[:N]``) run on a GPU.

    Decided without importing torch, because Snakemake asks at every start (a second run that
    has nothing to do should stay instant); for ``auto`` it looks for the NVIDIA driver, as
    :func:`xsyn.config.resolve_device` would find it through torch.
    """
    if device != "auto":
        return device.startswith("cuda")
    if os.environ.get("CUDA_VISIBLE_DEVICES", "x").strip() in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def cache_root() -> Path:
    """Project-local cache (``$XSYN_CACHE`` or ``./.cache/xsyn``), never the user's home."""
    return Path(os.environ.get("XSYN_CACHE", Path.cwd() / ".cache" / "xsyn")).resolve()


def _install_ultralytics_font(config_dir: Path) -> None:
    """ultralytics downloads Arial.ttf on first plot; give it matplotlib's DejaVuSans instead."""
    target = config_dir / "Ultralytics"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dest = target / name
        if dest.exists():
            continue
        try:
            import matplotlib

            src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        except ImportError:  # pragma: no cover - matplotlib is a hard dependency
            return
        target.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".ttf.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)


def ensure_offline() -> None:
    """Set the offline variables (unless the user set them) and a local YOLO config dir."""
    for key, value in OFFLINE_VARS.items():
        os.environ.setdefault(key, value)
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = str(cache_root() / "ultralytics")
    os.environ.setdefault("MPLBACKEND", "Agg")


def prepare_ultralytics() -> None:
    """Call before importing ultralytics: offline settings plus the font it would fetch."""
    ensure_offline()
    _install_ultralytics_font(Path(os.environ["YOLO_CONFIG_DIR"]))
