"""Train one ultralytics detector (YOLO family or RT-DETR) on a real + synthetic mix.

Models are built from a model ``.yaml`` (random init) or from a local ``.pt`` (its weights:
the authors' detectors started from pretrained backbones; ultralytics re-heads a COCO
checkpoint for the dataset's classes), never from a downloaded file: a ``.pt`` is accepted
only when it is an existing local file. Whether it is RT-DETR or YOLO is read from the
checkpoint itself, whatever the file is called. ``run.json`` records which file, which
kind of start and a digest of the weights. With ``pretrain_synthetic``
the run first trains on the synthetic sets alone, then fine-tunes those weights on the
real subset. Validation is the real ``val`` split in every stage.

Run folder (``out``)::

    mix/                 YOLO export of the real subset, synthetic sets and val; data yamls
    train/ | pretrain/ finetune/   ultralytics project folders (args, results.csv, weights)
    classes.json         YOLO class index → dataset category id (read by the evaluator)
    run.json             run identity, images per epoch of each set, the labelled data the run
                         touched, what a .pt start passed on (init), detection config, wall time
    weights.pt           final weights (best on val), written last and atomically
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from xsyn.detection.mix import build_mix, write_classes
from xsyn.io import atomic_path, read_json, write_json

TRAIN_KEYS = ("epochs", "imgsz", "batch", "workers")

# ultralytics' select_device() sets torch to min(8, cpu_count - 1) threads for CPU work, whatever
# the job was given; it runs when a trainer, a stand-alone validator or a predictor is set up, and
# each of these events fires right after it.
THREAD_RESET_EVENTS = ("on_pretrain_routine_start", "on_val_start", "on_predict_start")


def is_rtdetr(model: str | os.PathLike) -> bool:
    """RT-DETR or YOLO: a ``.pt`` says so in its checkpoint (the class of the model it
    holds), a ``.yaml`` in its name (ultralytics' RT-DETR files are ``rtdetr-*.yaml``)."""
    model = str(model)
    if model.endswith(".pt") and Path(model).is_file():
        from ultralytics.nn.tasks import torch_safe_load

        checkpoint, _ = torch_safe_load(model)
        held = checkpoint.get("ema") or checkpoint["model"]
        return type(held).__name__.startswith("RTDETR")
    return "rtdetr" in Path(model).name.lower()


def model_init(model: str | os.PathLike) -> dict[str, Any]:
    """Where a run starts (recorded in ``run.json``): a ``.pt``'s weights (with a digest, so
    a swapped file shows) or a ``.yaml``'s random init."""
    model = str(model)
    if model.endswith(".pt"):
        digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:12]
        return {"kind": "pretrained", "file": model, "sha256": digest,
                "family": "rtdetr" if is_rtdetr(model) else "yolo"}
    return {"kind": "scratch", "file": model, "sha256": None,
            "family": "rtdetr" if is_rtdetr(model) else "yolo"}


def check_model(model: str | os.PathLike) -> str:
    """Refuse a ``.pt`` that isn't a local file (ultralytics would try to download it)."""
    model = str(model)
    if model.endswith(".pt") and not Path(model).is_file():
        raise FileNotFoundError(
            f"{model}: no such local weights file (xsyn never downloads weights; "
            "give a model .yaml such as yolov8n.yaml or a local .pt)"
        )
    if not model.endswith((".pt", ".yaml", ".yml")):
        raise ValueError(f"{model}: a detector is a model .yaml or a local .pt")
    return model


def build_model(model: str | os.PathLike) -> Any:
    """An ultralytics model from a ``.yaml`` (fresh) or a local ``.pt`` (never downloaded),
    as RT-DETR or YOLO according to :func:`is_rtdetr`."""
    from xsyn.env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import RTDETR, YOLO

    model = check_model(model)
    cls = RTDETR if is_rtdetr(model) else YOLO
    detector = cls(model)
    keep_job_threads(detector)
    return detector


def keep_job_threads(detector: Any) -> None:
    """Make the detector train and predict with the job's threads (:func:`xsyn.env.job_threads`),
    not the count ultralytics picks for the machine."""
    from xsyn.env import use_job_threads

    for event in THREAD_RESET_EVENTS:
        detector.add_callback(event, lambda _: use_job_threads())


def ultralytics_args(det_cfg: Mapping[str, Any], seed: int, device: str, project: Path) -> dict[str, Any]:
    """Keyword arguments of ``Model.train`` shared by every stage of a run."""
    return {
        **{k: det_cfg[k] for k in TRAIN_KEYS},
        "seed": seed,
        "deterministic": True,
        "device": device,
        "amp": not device.startswith("cpu"),
        "project": str(project.resolve()),
        "exist_ok": True,
        "plots": False,
        "val": True,
        "verbose": False,
        # any other ultralytics train argument (optimizer, lr0, nbs, mosaic, ...), verbatim
        **dict(det_cfg["train_args"] or {}),
    }


def final_weights(trainer: Any) -> Path:
    """best.pt (best val fitness) if ultralytics wrote it, else last.pt."""
    for path in (Path(trainer.best), Path(trainer.last)):
        if path.is_file():
            return path
    raise FileNotFoundError(f"{trainer.save_dir}: training wrote no weights")


def train_detector(
    dataset: str | os.PathLike,
    model: str,
    share: float,
    sources: Sequence[str],
    seed: int,
    out: str | os.PathLike,
    synthetic_root: str | os.PathLike,
    det_cfg: Mapping[str, Any],
    device: str,
    name: str | None = None,
    budget: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Build the mix, train (optionally pre-train on synthetic, then fine-tune on real),
    and write ``out/weights.pt``; returns the run record also written to ``run.json``.
    ``name`` is the run's model name (:func:`xsyn.methods.model_name` of the entry).

    ``budget`` is the prepared dataset behind the source ``budget`` (its
    ``detection.budget.split``). ``run.json`` lists every labelled set the run touched
    (``labelled_data``: images, boxes, images per epoch) and, for a ``.pt`` start, which of
    the model's tensors came from it (``init``: ``tensors``, ``from_init``, ``new``)."""
    from xsyn.methods import BUDGET, REAL_REPEAT, is_pretrained, model_name

    check_model(model)
    init, run_name = model_init(model), name or model_name(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    shutil.rmtree(out / "mix", ignore_errors=True)  # a stale mix from an earlier run would leak images
    # A run reads the mix settings its sources need (xsyn.jobs.detector_reads): real-only none.
    extra = [s for s in sources if s != REAL_REPEAT]
    mix = build_mix(
        dataset, share, sources, synthetic_root, out / "mix",
        repeat=float(det_cfg["synthetic_repeat"]) if extra else 1.0, seed=seed,
        mix_cfg=det_cfg["mix"] if sources else None,
        budget=(budget, det_cfg["budget"]["split"]) if budget is not None and BUDGET in sources else None,
    )
    if mix.synthetic_dirs and det_cfg["pretrain_synthetic"]:
        stages = [("pretrain", mix.synthetic_dirs), ("finetune", mix.real_dirs)]
    else:
        stages = [("train", mix.real_dirs + mix.synthetic_dirs)]
    args = ultralytics_args(det_cfg, seed, device, out)

    weights: str | Path = model
    for i, (name, train_dirs) in enumerate(stages):
        data = mix.data_yaml(out / "mix" / f"{name}.yaml", train_dirs)
        detector = build_model(weights)
        if i == 0 and is_pretrained(model):
            detector.add_callback("on_pretrain_routine_end", partial(record_transfer, init, model))
        detector.train(data=str(data), name=name, **args)
        weights = final_weights(detector.trainer)

    write_classes(out / "classes.json", mix.classes)
    record = {
        "dataset": Path(dataset).name,
        "model": run_name,
        "model_file": str(model),
        "init": init,
        "source": "+".join(sources) if sources else "none",
        "share": share,
        "seed": seed,
        "stages": [name for name, _ in stages],
        "images": mix.counts,
        "labelled_data": mix.labelled_data,
        "device": device,
        "detection": dict(det_cfg),
        "train_seconds": round(time.time() - start, 1),
    }
    write_json(out / "run.json", record)
    with atomic_path(out / "weights.pt", suffix=".pt") as tmp:
        shutil.copyfile(weights, tmp)
    return record


def transfer_report(init_weights: str | os.PathLike, model: Any) -> dict[str, Any]:
    """Which tensors of ``model`` (as training starts) hold the values of ``init_weights``.

    ultralytics copies every tensor whose name and shape fit and builds the rest new: for a
    detector initialised on other classes, only the class layers of the head should be new.
    Recorded in ``run.json`` so every run shows what it inherited.
    """
    import torch

    ckpt = torch.load(init_weights, map_location="cpu", weights_only=False)
    source = (ckpt.get("ema") or ckpt["model"]).float().state_dict()
    new, same = [], 0
    for key, value in model.state_dict().items():
        ref = source.get(key)
        if ref is not None and ref.shape == value.shape and torch.equal(ref, value.detach().float().cpu()):
            same += 1
        else:
            new.append(key)
    return {"weights": str(init_weights), "tensors": same + len(new), "from_init": same, "new": new}


def record_transfer(record: dict[str, Any], init_weights: str | os.PathLike, trainer: Any) -> None:
    """ultralytics callback (``on_pretrain_routine_end``: model built, no step taken yet):
    adds ``tensors``, ``from_init`` and ``new`` to the run's ``init`` record (whose ``file``
    already names the weights)."""
    report = transfer_report(init_weights, trainer.model)
    record.update({k: v for k, v in report.items() if k != "weights"})


def read_run(weights: str | os.PathLike) -> dict[str, Any]:
    """The ``run.json`` beside a weights file ({} when the weights came from elsewhere)."""
    path = Path(weights).parent / "run.json"
    return read_json(path) if path.is_file() else {}
