"""What each ``xsyn`` command reads of the run configuration: one table, used by both sides.

The workflow hands a command :func:`job_config`: the keys that command reads for this one
job, cut out of the run's configuration, and nothing else. The command sees exactly those
keys (:func:`xsyn.config.config_from_args`): reading any other raises a
:class:`~xsyn.config.ConfigError` that names it, and a ``--config-json`` that leaves out a
key the command reads is refused before any work starts. So no command can act on a value
its rule did not pass (the smoke defaults never fill a gap silently), and Snakemake re-runs
a job exactly when something it reads changes.

The experiment matrix (:data:`MATRIX`: which methods, models, shares, sources and seeds,
the shard count) belongs to the workflow: no job reads it, so growing the matrix adds jobs
and changes none. A job's own coordinates (its method, model, share, seed, shard) reach
the command as arguments from the job's wildcards, never as lists in its config.

This module imports nothing heavy: the Snakefile reads it at start-up.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from xsyn.methods import get_method

ALL = "*"  # reads the whole configuration (``xsyn config``)

MATRIX = (
    "synthesis.methods", "synthesis.shards",
    "detection.models", "detection.shares", "detection.sources", "detection.seeds",
)

# Sampling settings every generator method uses, and where its candidate regions come from.
SAMPLING = tuple(f"synthesis.{k}" for k in (
    "source_split", "batch_size", "steps", "grounding_beta", "compile", "guidance_scale", "eta",
    "negative_prompt", "mixed_precision", "seed",
))
CANDIDATE_SOURCE = ("synthesis.car.segmenter", "synthesis.car.sam_path")

READS: dict[str, tuple[str, ...]] = {
    "config": (ALL,),
    "phantom": ("phantom",),
    "prepare": ("dataset",),
    "finetune": ("device", "generator", "finetune"),
    "samples": ("device", "generator.resolution", "finetune.train_split", "finetune.seed",
                "synthesis.steps", "synthesis.guidance_scale"),
    "candidates": ("device", *CANDIDATE_SOURCE),
    "train-detector": ("device", *(f"detection.{k}" for k in (
        "epochs", "imgsz", "batch", "workers", "synthetic_repeat", "pretrain_synthetic", "train_args"))),
    "evaluate": ("device", *(f"detection.{k}" for k in (
        "eval_splits", "conf", "iou", "max_det", "imgsz", "batch"))),
    # export-yolo, import-yolo, show, gather, aggregate: no configuration (paths and flags only)
}


def reads(command: str, method: str | None = None) -> tuple[str, ...]:
    """The key paths ``command`` reads (for ``synthesize``: those of its ``method``)."""
    if command == "synthesize":
        if method is None:
            raise ValueError("synthesize: which keys it reads depends on --method")
        return synthesis_reads(method)
    return READS[command] if command in READS else ()


def synthesis_reads(method: str) -> tuple[str, ...]:
    """TIP composites real items (its own section); a generator method samples at the
    generator's resolution with the sampling settings, plus CAR / BOM / Xsyn-A's placement
    rules only when its recipe uses them (so an ablation without CAR ignores CAR's knobs)."""
    recipe = get_method(method)
    if not recipe.generator:
        return ("synthesis.source_split", "synthesis.seed", "tip")
    out = ["device", "generator.resolution", *SAMPLING, *CANDIDATE_SOURCE]
    if recipe.car:
        out.append("synthesis.car")
    if recipe.bom:
        out.append("synthesis.bom")
    if recipe.layout != "free":  # xsyn-a places items, xsyn-m picks BOM regions, with these rules
        out.append("synthesis.xsyn_a")
    return tuple(out)


def cut(cfg: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    """The part of ``cfg`` under ``paths`` (``"a.b"`` keeps ``cfg["a"]["b"]``), as plain
    nested dicts, without the matrix keys. A path ``cfg`` lacks raises ``KeyError`` naming it."""
    paths = list(paths)
    if ALL in paths:
        return copy.deepcopy(dict(cfg))
    out: dict[str, Any] = {}
    for path in paths:
        keys = path.split(".")
        src: Any = cfg
        for i, k in enumerate(keys):
            if not isinstance(src, Mapping) or k not in src:
                raise KeyError(f"configuration has no {'.'.join(keys[: i + 1])}")
            src = src[k]
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = copy.deepcopy(src)
    for path in MATRIX:
        *parents, leaf = path.split(".")
        node = out
        for k in parents:
            node = node[k] if isinstance(node, dict) and k in node else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return out


def leaves(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of every non-mapping value (an empty mapping counts as a leaf)."""
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(leaves(value, path + "."))
        else:
            out.append(path)
    return out


def launcher(processes: int, mixed_precision: str) -> str:
    """How a rule starts ``xsyn``: itself for one process; ``accelerate launch`` with one
    process per GPU for more (``finetune.gpus``), so the GPUs a job asks for all train."""
    if processes == 1:
        return "xsyn"
    return (f"accelerate launch --multi_gpu --num_processes {processes} --num_machines 1 "
            f"--mixed_precision {mixed_precision} --dynamo_backend no -m xsyn")


def job_config(cfg: Mapping[str, Any], command: str, method: str | None = None) -> dict[str, Any]:
    """What a rule hands ``xsyn command`` for one job (``method``: the job's wildcard)."""
    return cut(cfg, reads(command, method))
