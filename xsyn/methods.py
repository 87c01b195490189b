"""The names of the experiment's arms: synthetic-set methods, detector sources and models.

One registry, read by everything that needs a method name: the config validation (the
schema's enum of ``synthesis.methods``), ``xsyn synthesize --method`` and its help, the
recipes :mod:`xsyn.synthesis.run` samples with, the dispatch in :mod:`xsyn.synthesize`,
and the workflow's rules (which methods need the generator). Adding a method here is
the whole of registering it. This module imports nothing heavy: the Snakefile and the
config loader read it at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REAL_ONLY = "none"  # the detector source "real data only" (results paths, tables, plots)
# Controls of the study (DESIGN §8): detector sources that are not synthetic sets.
REAL_REPEAT = "real-repeat"  # the real subset alone, oversampled to the mixed arms' images per epoch
BUDGET = "budget"  # the generator's own labelled pre-training scans, given to the detector directly
CONTROLS: dict[str, str] = {
    REAL_REPEAT: "real subset oversampled to the mixed arms' optimizer steps (what more steps alone give)",
    BUDGET: "real + the generator's labelled pre-training scans (the ceiling of what it could pass on)",
}


@dataclass(frozen=True)
class SynthesisMethod:
    """A synthetic-set recipe. ``generator`` methods sample the fine-tuned generator with a
    ``layout`` (:mod:`xsyn.synthesis.layouts`) and CAR / BOM on or off; the others
    (TIP) composite real items without it."""

    name: str
    summary: str
    generator: bool
    layout: str | None = None
    car: bool = False
    bom: bool = False


METHODS: dict[str, SynthesisMethod] = {m.name: m for m in (
    SynthesisMethod("xsyn-a", "Xsyn-A: one new item on a benign object of each scan (CAR + BOM)",
                    True, "xsyn-a", car=True, bom=True),
    SynthesisMethod("xsyn-m", "Xsyn-M: every item of each scan re-generated in place (CAR + BOM)",
                    True, "xsyn-m", car=True, bom=True),
    SynthesisMethod("gligen-plain", "Xsyn-A layout, no CAR, no BOM: the requested boxes are the labels",
                    True, "xsyn-a"),
    SynthesisMethod("xsyn-a-nocar", "Xsyn-A without CAR (ablation)", True, "xsyn-a", bom=True),
    SynthesisMethod("xsyn-a-nobom", "Xsyn-A without BOM (ablation)", True, "xsyn-a", car=True),
    SynthesisMethod("free", "text-to-image without a source scan, boxes read from the attention",
                    True, "free", car=True),
    SynthesisMethod("tip", "TIP: real items cut out and pasted into other scans (two-stage baseline)",
                    False),
)}


def get_method(name: str) -> SynthesisMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown synthesis method {name!r}; expected one of {tuple(METHODS)}") from None


def describe_methods() -> str:
    """One line per method, for ``--help`` texts and docs."""
    return "\n".join(f"{m.name}: {m.summary}" for m in METHODS.values())


def parse_sources(spec: str) -> list[str]:
    """A detector's ``--source``: ``"none"`` → ``[]``; ``"xsyn-a+tip"`` → ``["xsyn-a", "tip"]``.

    ``real-repeat`` is an arm of its own (``["real-repeat"]``); ``budget`` may join synthetic sets.
    """
    parts = [s.strip() for s in spec.split("+") if s.strip()]
    if not parts:
        raise ValueError(f"--source {spec!r}: empty source list (use {REAL_ONLY!r} for real only)")
    for alone in (REAL_ONLY, REAL_REPEAT):
        if alone in parts and len(parts) > 1:
            raise ValueError(f"--source {spec!r}: {alone!r} cannot be combined with other sources")
    if parts == [REAL_ONLY]:
        return []
    if len(set(parts)) != len(parts):
        raise ValueError(f"--source {spec!r}: a source is listed twice")
    return parts


MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")  # one path component of results/runs/…


def model_file(entry: str | Mapping[str, Any]) -> str:
    return str(entry["file"]) if isinstance(entry, Mapping) else str(entry)


def model_name(entry: str | Mapping[str, Any]) -> str:
    """The run name of one ``detection.models`` entry (see the module docstring)."""
    if isinstance(entry, Mapping):
        return str(entry["name"])
    path = Path(str(entry))
    return path.stem if path.suffix in (".yaml", ".yml") else path.name


def model_runs(models: Iterable[str | Mapping[str, Any]]) -> dict[str, str]:
    """Run name → model file for every entry; a name used twice or unfit for a path
    component raises ``ValueError`` naming the entries."""
    runs: dict[str, str] = {}
    for entry in models:
        name, file = model_name(entry), model_file(entry)
        if not MODEL_NAME.match(name):
            raise ValueError(f"detection.models: run name {name!r} (of {file}) must be letters, digits, . _ + -")
        if name in runs:
            raise ValueError(
                f"detection.models: {runs[name]} and {file} would share the run name {name!r}; "
                f"give one a name of its own, e.g. {{name: {name}-2, file: {file}}}"
            )
        runs[name] = file
    return runs


def is_pretrained(file: str | Path) -> bool:
    """A ``.pt`` starts from its weights; a ``.yaml`` from random init."""
    return str(file).endswith(".pt")


def synthetic_sources(spec: str) -> list[str]:
    """The synthetic sets a detector ``--source`` reads (its controls left out)."""
    return [s for s in parse_sources(spec) if s not in CONTROLS]
