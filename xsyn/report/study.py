"""The study's statistics (DESIGN §8): paired differences with bootstrap CIs a reader can check.

For every arm (detector source) and share: AP mean ± std over seeds (the numbers of the
metrics files), a 95 % CI of that mean, and the paired differences to the reference arms
(real-only and TIP) with their CIs. The CIs are bias-corrected percentile bootstrap
intervals (:func:`bc_interval`) over
seeds × test images: each resample draws the seeds (with replacement, the same draw for
every arm at that share) and the test images (with replacement, the same draw for every
run; a drawn image counts once per draw, each copy a distinct image), and scores every run
on it with pycocotools' accumulation (:mod:`xsyn.report.bootstrap`). An arm and its
reference are thus compared on the same seeds and images in every resample.

The half-width of a paired CI is the effect size the experiment can resolve: the table
states it per share. Outputs: ``tables/study.{md,csv}``, ``plots/study_ap_vs_share.{png,csv}``
(AP vs share with CI bands) and ``study.json`` (flat cells for ``dvc metrics``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from xsyn.data.contract import load_split
from xsyn.detection.evaluate import predictions_path
from xsyn.io import atomic_path, read_json, write_json, write_text
from xsyn.methods import REAL_ONLY
from xsyn.report.aggregate import (
    MetricsError,
    find_metric_files,
    fmt_delta,
    fmt_mean_std,
    load_metrics,
)
from xsyn.report.bootstrap import ImageMatches, evaluate_images
from xsyn.report.labels import share_label, source_label, source_order

GROUP = ["dataset", "model", "split"]


def run_matches(runs: pd.DataFrame, dataset: Path, split: str) -> list[ImageMatches]:
    """Each run's per-image matches on ``split``, checked against its metrics file's AP."""
    coco = load_split(dataset, split)
    out = []
    for row in tqdm(list(runs.itertuples(index=False)), desc=f"match {split}", unit="run"):
        preds = predictions_path(row.file, split)
        if not preds.is_file():
            raise MetricsError(f"{preds}: predictions of {row.file} not found (written by `xsyn evaluate`)")
        matches = evaluate_images(coco, read_json(preds), str(preds))
        if not np.isclose(100 * matches.ap(), row.AP, atol=1e-6, equal_nan=True):
            raise MetricsError(f"{preds}: AP {100 * matches.ap():.4f} != {row.AP:.4f} in {row.file} "
                               f"(predictions and metrics disagree, or another {dataset}/{split})")
        out.append(matches)
    return out


def seed_table(runs: pd.DataFrame) -> dict[float, list[int]]:
    """Share → the seeds every arm at that share has (pairing needs the same seeds)."""
    seeds = {}
    for share, df in runs.groupby("share"):
        by_source = {s: sorted(d["seed"]) for s, d in df.groupby("source")}
        first = next(iter(by_source.values()))
        for source, s in by_source.items():
            if s != first:
                raise MetricsError(f"share {share_label(share)} %: arm {source!r} has seeds {s}, "
                                   f"others {first}: paired differences need the same seeds")
        seeds[float(share)] = first
    return seeds


def bootstrap_means(runs: pd.DataFrame, matches: list[ImageMatches], resamples: int,
                    seed: int) -> dict[tuple[str, float], np.ndarray]:
    """(source, share) → mean AP (%) over the drawn seeds, one value per resample."""
    n_images = len(matches[0].image_ids)
    if any(m.image_ids != matches[0].image_ids for m in matches):
        raise MetricsError("runs were scored on different test images")
    seeds = seed_table(runs)
    index = {(r.source, float(r.share), int(r.seed)): i for i, r in enumerate(runs.itertuples(index=False))}
    cells = sorted({(r.source, float(r.share)) for r in runs.itertuples(index=False)})
    rng = np.random.default_rng(seed)
    out = {cell: np.empty(resamples) for cell in cells}
    for b in tqdm(range(resamples), desc="bootstrap", unit="resample"):
        images = rng.integers(0, n_images, n_images)
        drawn = {share: rng.choice(s, size=len(s), replace=True) for share, s in seeds.items()}
        ap: dict[int, float] = {}
        for source, share in cells:
            values = []
            for s in drawn[share]:
                i = index[(source, share, int(s))]
                if i not in ap:
                    ap[i] = 100 * matches[i].ap(images)
                values.append(ap[i])
            out[(source, share)][b] = np.mean(values)
    return out


def bc_interval(dist: np.ndarray, estimate: float, confidence: float) -> tuple[float, float]:
    """Bias-corrected percentile interval (Efron's BC) of the bootstrap values ``dist``.

    AP on resampled images is biased upward (the precision envelope takes maxima over
    noisy curves), so plain percentiles sit above the estimate; BC shifts them by the share
    of resamples below it (``z0``). A bootstrap centred on the estimate gives plain percentiles.
    """
    normal = NormalDist()
    below = (np.sum(dist < estimate) + 0.5 * np.sum(dist == estimate)) / len(dist)
    z0 = normal.inv_cdf(float(np.clip(below, 0.5 / len(dist), 1 - 0.5 / len(dist))))
    z = normal.inv_cdf(0.5 + confidence / 2)
    lo, hi = np.quantile(dist, [normal.cdf(2 * z0 - z), normal.cdf(2 * z0 + z)])
    return float(lo), float(hi)


def compare(runs: pd.DataFrame, means: Mapping[tuple[str, float], np.ndarray], references: Sequence[str],
            confidence: float) -> pd.DataFrame:
    """One row per (source, share): AP mean/std over seeds, its CI, Δ to each reference + CI."""
    point = runs.groupby(["source", "share"])["AP"].agg(["mean", "std", "count"])
    seeds = runs.groupby(["source", "share"])["seed"].agg(lambda s: ",".join(str(v) for v in sorted(s)))
    rows = []
    for (source, share), dist in means.items():
        mean = point.loc[(source, share), "mean"]
        lo, hi = bc_interval(dist, mean, confidence)
        row = {"source": source, "share": share, "n_seeds": int(point.loc[(source, share), "count"]),
               "seeds": seeds.loc[(source, share)], "AP_mean": mean, "AP_std": point.loc[(source, share), "std"],
               "AP_lo": lo, "AP_hi": hi}
        for ref in references:
            key = f"d_{ref}"
            if (ref, share) not in means or ref == source:
                row.update({key: np.nan, f"{key}_lo": np.nan, f"{key}_hi": np.nan, f"{key}_hw": np.nan})
                continue
            delta = mean - point.loc[(ref, share), "mean"]
            lo, hi = bc_interval(dist - means[(ref, share)], delta, confidence)
            row.update({key: delta, f"{key}_lo": lo, f"{key}_hi": hi, f"{key}_hw": (hi - lo) / 2})
        rows.append(row)
    df = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(source_order(df["source"]))}
    return df.assign(_o=df["source"].map(order)).sort_values(["share", "_o"]).drop(columns="_o").reset_index(drop=True)


def metric_files(metrics: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """A folder of metrics files (all of them) or the files themselves."""
    paths = [Path(metrics)] if isinstance(metrics, str | os.PathLike) else [Path(m) for m in metrics]
    if len(paths) == 1 and paths[0].is_dir():
        return find_metric_files(paths[0])
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MetricsError(f"metrics files not found: {missing[:5]}")
    return paths


def study_frame(metrics: str | os.PathLike | Sequence[str | os.PathLike], dataset: str | os.PathLike,
                boot: Mapping[str, Any]) -> pd.DataFrame:
    """Every (dataset, model, split) of the metrics files compared (see :func:`compare`)."""
    dataset = Path(dataset)
    runs = load_metrics(metric_files(metrics)).runs
    frames = []
    for (ds, model, split), df in runs.groupby(GROUP, sort=False):
        if ds != dataset.name:
            raise MetricsError(f"runs of dataset {ds!r} cannot be scored on {dataset}")
        df = df.sort_values(["share", "source", "seed"]).reset_index(drop=True)
        matches = run_matches(df, dataset, split)
        means = bootstrap_means(df, matches, int(boot["resamples"]), int(boot["seed"]))
        table = compare(df, means, list(boot["references"]), float(boot["confidence"]))
        frames.append(table.assign(dataset=ds, model=model, split=split, n_images=len(matches[0].image_ids)))
    return pd.concat(frames, ignore_index=True)


def _ci(lo: float, hi: float) -> str:
    return "–" if np.isnan(lo) else f"[{lo:+.1f}, {hi:+.1f}]"


def study_markdown(df: pd.DataFrame, boot: Mapping[str, Any]) -> str:
    pct = f"{100 * float(boot['confidence']):g} %"
    refs = list(boot["references"])
    lines = [
        "# The study: paired differences with bootstrap confidence intervals",
        "",
        f"COCO AP (%) from pycocotools on real test scans: mean ± std over seeds. {pct} CIs: bias-corrected "
        f"percentile bootstrap over seeds × test images ({boot['resamples']} resamples, seed {boot['seed']}). Each resample "
        "draws the seeds and the test images with replacement (a drawn image counts once per draw, each copy a "
        "distinct image) and scores every run on that draw, so Δ (arm − reference, same seeds, same images) is "
        "paired. ± after a Δ CI: its half-width, the smallest effect the experiment resolves. Per-class AP: "
        "`results/tables/per_class.md`; every run's labelled data: its `run.json`.",
    ]
    for (dataset, model, split), g in df.groupby(GROUP, sort=False):
        lines += ["", f"## {dataset} · {model} · split `{split}` ({int(g['n_images'].iloc[0])} images)", ""]
        if REAL_ONLY in refs:
            for share, s in g.groupby("share"):
                hw = s[f"d_{REAL_ONLY}_hw"].dropna()
                if len(hw):
                    lines.append(f"- {share_label(share)} % real data: paired {pct} CIs vs real only are "
                                 f"± {hw.median():.1f} AP (median half-width; {hw.min():.1f}–{hw.max():.1f}).")
            lines.append("")
        table = pd.DataFrame({
            "arm": g["source"].map(source_label),
            "real data (%)": g["share"].map(share_label),
            "AP (%)": [fmt_mean_std(a, b) for a, b in zip(g["AP_mean"], g["AP_std"], strict=True)],
            f"{pct} CI": [_ci(lo, hi).replace("+", "") for lo, hi in zip(g["AP_lo"], g["AP_hi"], strict=True)],
            **{f"Δ vs {source_label(ref)} ({pct} CI)": [
                "–" if np.isnan(d) else f"{fmt_delta(d)} {_ci(lo, hi)} ± {hw:.1f}"
                for d, lo, hi, hw in zip(g[f"d_{ref}"], g[f"d_{ref}_lo"], g[f"d_{ref}_hi"], g[f"d_{ref}_hw"],
                                         strict=True)] for ref in refs},
            "seeds": g["seeds"],
        })
        lines.append(table.to_markdown(index=False))
    return "\n".join(lines) + "\n"


def study_metrics(df: pd.DataFrame, boot: Mapping[str, Any]) -> dict[str, Any]:
    """``study.json``: one flat cell per ``dataset/model/split/source/pSHARE`` (``dvc metrics``)."""
    cells = {}
    value_cols = [c for c in df.columns if c.startswith(("AP_", "d_"))]
    for row in df.to_dict("records"):
        key = f"{row['dataset']}/{row['model']}/{row['split']}/{row['source']}/p{share_label(row['share'])}"
        cells[key] = {c: (None if np.isnan(row[c]) else round(float(row[c]), 3)) for c in value_cols}
        cells[key]["n_seeds"] = int(row["n_seeds"])
    return {"unit": "percent (COCO AP x 100, pycocotools)", "resamples": int(boot["resamples"]),
            "confidence": float(boot["confidence"]), "references": list(boot["references"]), "cells": cells}


def plot_study(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """AP vs share, one line per arm with its CI band; an arm run at one share is a point
    with its CI as an error bar."""
    from xsyn.report.plots import _colours, _panels, save, share_axes

    groups = list(df.groupby(GROUP, sort=False))
    fig, axes = _panels(max(len(groups), 1))
    colours = _colours(source_order(df["source"]))
    for ax, ((dataset, model, split), g) in zip(axes, groups, strict=False):
        for source in source_order(g["source"]):
            d = g[g["source"] == source].sort_values("share")
            style = dict(color=colours[source], label=source_label(source))
            if len(d) > 1:
                ax.plot(d["share"], d["AP_mean"], marker="o", linestyle="--" if source == REAL_ONLY else "-", **style)
                ax.fill_between(d["share"], d["AP_lo"], d["AP_hi"], color=colours[source], alpha=0.15)
            else:
                ax.errorbar(d["share"], d["AP_mean"], yerr=[d["AP_mean"] - d["AP_lo"], d["AP_hi"] - d["AP_mean"]],
                            marker="s", capsize=3, linestyle="none", **style)
        share_axes(ax, sorted(g["share"].unique()), "AP (%), bootstrap CI", f"{dataset} · {model} · {split}",
                   legend_size=7)
    save(fig, path)


def write_study(metrics: str | os.PathLike | Sequence[str | os.PathLike], dataset: str | os.PathLike,
                out_dir: str | os.PathLike, boot: Mapping[str, Any]) -> pd.DataFrame:
    """Compute the study's statistics (``metrics``: a folder or the files) and write its
    table, plot and metrics under ``out_dir``."""
    out_dir = Path(out_dir)
    df = study_frame(metrics, dataset, boot)
    cols = GROUP + ["n_images"] + [c for c in df.columns if c not in GROUP + ["n_images"]]
    df = df[cols]
    for path, frame in ((out_dir / "tables" / "study.csv", df),
                        (out_dir / "plots" / "study_ap_vs_share.csv",
                         df[GROUP + ["source", "share", "AP_mean", "AP_lo", "AP_hi"]])):
        with atomic_path(path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    write_text(out_dir / "tables" / "study.md", study_markdown(df, boot))
    plot_study(df, out_dir / "plots" / "study_ap_vs_share.png")
    write_json(out_dir / "study.json", study_metrics(df, boot))
    return df
