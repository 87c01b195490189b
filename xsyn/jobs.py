"""What each ``xsyn`` command reads of the run configuration: one table, used by both sides.

The workflow hands a command :func:`job_config`: the keys that command reads for this one
job, cut out of the run's configuration, and nothing else. The command sees exactly those
keys (:func:`xsyn.config.config_from_args`): reading any other raises a
:class:`~xsyn.config.ConfigError` that names it, and a ``--config-json`` that leaves out a
key the command reads is refused before any work starts. So no command can act on a value
its rule did not pass (the smoke defaults never fill a gap silently), and Snakemake re-runs
a job exactly when something it reads changes.

The experiment matrix (:data:`MATRIX`: which methods, models, shares, sources and seeds,
the ablations' arms and shares, the shard count, whether sets are made per share) belongs
to the workflow: no job reads it, so growing the matrix adds jobs and changes none. A job's
own coordinates (its method, model, share, seed, shard) reach the command as arguments from
the job's wildcards, never as lists in its config. Which keys a job reads may depend on its
arm: a synthesis method reads its recipe's knobs, a detector source its mix's
(:func:`detector_reads`); with ``synthesis.per_share`` a job of one share reads that share's
real subset as its split (:func:`share_config`).

This module imports nothing heavy: the Snakefile reads it at start-up.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from xsyn.data.contract import train_split
from xsyn.methods import BUDGET, REAL_ONLY, REAL_REPEAT, get_method, parse_sources

ALL = "*"  # reads the whole configuration (``xsyn config``)

MATRIX = (
    "synthesis.methods", "synthesis.shards", "synthesis.per_share",
    "detection.models", "detection.shares", "detection.sources", "detection.seeds", "detection.ablations",
)
# Read by the workflow alone (which configuration made the budget control's data, how many threads a
# torch job holds), never by a job.
WORKFLOW = ("detection.budget.config", "torch_threads")

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
    "train-detector": ("device", *(f"detection.{k}" for k in ("epochs", "imgsz", "batch", "workers", "train_args"))),
    "evaluate": ("device", *(f"detection.{k}" for k in (
        "eval_splits", "conf", "iou", "max_det", "imgsz", "batch"))),
    "compare": ("report.bootstrap",),
    # export-yolo, import-yolo, show, gather, aggregate: no configuration (paths and flags only)
}


def reads(command: str, arm: str | None = None) -> tuple[str, ...]:
    """The key paths ``command`` reads (``arm``: for ``synthesize`` its ``--method``, for
    ``train-detector`` its ``--source``)."""
    if command == "synthesize":
        if arm is None:
            raise ValueError("synthesize: which keys it reads depends on --method")
        return synthesis_reads(arm)
    if command == "train-detector":
        return detector_reads(REAL_ONLY if arm is None else arm)
    return READS[command] if command in READS else ()


def detector_reads(source: str) -> tuple[str, ...]:
    """A detector reads how it trains; how the epoch is mixed only when it trains on more than
    its real subset (``detection.mix``: the real-repeat control, and for extra sets also
    ``synthetic_repeat`` and ``pretrain_synthetic``), and the budget set's split only for the
    ``budget`` source. So tuning the mix re-runs no real-only detector."""
    sources = parse_sources(source)
    out = list(READS["train-detector"])
    if sources:
        out.append("detection.mix")
    if [s for s in sources if s != REAL_REPEAT]:
        out += ["detection.synthetic_repeat", "detection.pretrain_synthetic"]
    if BUDGET in sources:
        out.append("detection.budget.split")
    return tuple(out)


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


def share_config(cfg: Mapping[str, Any], share: float | None) -> Mapping[str, Any]:
    """``cfg`` as a job of detection share ``share`` reads it: with ``synthesis.per_share``
    (equal information, DESIGN §8) the generator is fine-tuned on, and synthesis draws its
    scans from, that share's real subset (``finetune.train_split`` and
    ``synthesis.source_split`` become ``train_pNN``). Otherwise, or for ``share`` None, ``cfg``."""
    if share is None or not cfg["synthesis"]["per_share"]:
        return cfg
    out = copy.deepcopy(dict(cfg))
    out["finetune"]["train_split"] = out["synthesis"]["source_split"] = train_split(share)
    return out


def job_config(cfg: Mapping[str, Any], command: str, arm: str | None = None,
               share: float | None = None) -> dict[str, Any]:
    """What a rule hands ``xsyn command`` for one job (``arm``: the job's method or source
    wildcard; ``share``: its detection share, which matters only with ``synthesis.per_share``)."""
    return cut(share_config(cfg, share), reads(command, arm))
