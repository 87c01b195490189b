"""Process environment: offline by default, project-local caches.

Everything xsyn starts (CLI, Snakemake rules, tests) imports :mod:`xsyn` first, so these
variables are set before diffusers, transformers or ultralytics read them. A user can still
opt in to the network by exporting the variables themselves before starting.
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
