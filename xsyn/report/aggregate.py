"""Collect per-run metrics JSONs into one summary, CSV/Markdown tables and plot data.

Input: the files ``xsyn evaluate`` writes (``results/metrics/**/<seed>.json``; the
``*.predictions.*.json`` beside them are skipped). Each carries its run identity
(dataset, model, source, share, seed), so nothing is parsed from paths.

Aggregated numbers are COCO AP in **percent** (pycocotools' fraction × 100, as the
paper reports them): mean ± sample standard deviation (ddof 1) over seeds, and Δ = mean
AP of a source minus mean AP of real-only (source ``none``) at the same dataset, model,
split and share.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xsyn.io import atomic_path, read_json, write_json, write_text
from xsyn.methods import REAL_ONLY
from xsyn.report.labels import share_label, source_label, source_order

KEYS = ["dataset", "model", "split", "source", "share"]
METRICS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"]
TABLE_METRICS = ["AP", "AP50", "AP75"]


class MetricsError(ValueError):
    """A metrics file is missing something; the message names the file and the key."""


@dataclass
class Metrics:
    """Everything read from the metrics files, one row per run × split (× class / recall)."""

    runs: pd.DataFrame
    per_class: pd.DataFrame
    pr: pd.DataFrame


def find_metric_files(root: str | os.PathLike) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: metrics folder not found")
    return sorted(p for p in root.rglob("*.json") if ".predictions." not in p.name)


def _percent(v: float | None) -> float:
    return np.nan if v is None else 100.0 * float(v)


def _identity(data: Any, path: Path) -> dict[str, Any]:
    run = data.get("run") if isinstance(data, dict) else None
    if not isinstance(run, dict):
        raise MetricsError(f"{path}: no 'run' identity (was it written by `xsyn evaluate`?)")
    for key in ("dataset", "model", "source", "share", "seed"):
        if run.get(key) is None:
            raise MetricsError(f"{path}: run.{key} is missing")
    if not isinstance(data.get("splits"), dict) or not data["splits"]:
        raise MetricsError(f"{path}: no 'splits' results")
    return {"dataset": str(run["dataset"]), "model": str(run["model"]), "source": str(run["source"]),
            "share": float(run["share"]), "seed": int(run["seed"])}


def load_metrics(files: Iterable[str | os.PathLike]) -> Metrics:
    """Read every metrics file into three long tables (runs, per-class AP, mean PR curve)."""
    runs, per_class, pr = [], [], []
    for path in map(Path, files):
        data = read_json(path)
        ident = _identity(data, path)
        for split, result in data["splits"].items():
            row = {**ident, "split": split, "file": str(path)}
            try:
                stats = result["stats"]
                row.update({m: _percent(stats[m]) for m in METRICS})
                classes = result["per_class"]
                curve = result["pr_curve"]
            except (KeyError, TypeError) as e:
                raise MetricsError(f"{path}: splits.{split}: missing {e}") from None
            runs.append(row)
            for c in classes:
                per_class.append({**ident, "split": split, "class": c["name"],
                                  "AP": _percent(c["AP"]), "AP50": _percent(c["AP50"]), "n_gt": c["n_gt"]})
            if curve.get("mean") is not None:
                for r, p in zip(curve["recall"], curve["mean"], strict=True):
                    pr.append({**ident, "split": split, "recall": r, "precision": p})
    if not runs:
        raise MetricsError("no metrics files found")
    runs_df = pd.DataFrame(runs)
    dup = runs_df[runs_df.duplicated(KEYS + ["seed"], keep=False)]
    if not dup.empty:
        first = dup.iloc[0]
        files_ = sorted(dup[(dup[KEYS + ['seed']] == first[KEYS + ['seed']]).all(axis=1)]["file"])
        raise MetricsError(f"the same run (seed {first['seed']}) appears in several files: {files_}")
    return Metrics(runs_df, pd.DataFrame(per_class), pd.DataFrame(pr))


def _sort(df: pd.DataFrame, extra: list[str] | None = None) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(source_order(df["source"]))}
    cols = ["dataset", "model", "split", "share", "_src"] + (extra or [])
    return df.assign(_src=df["source"].map(order)).sort_values(cols).drop(columns="_src").reset_index(drop=True)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, split, source, share): mean/std over seeds, Δ vs real-only."""
    grouped = runs.groupby(KEYS, sort=False)
    out = grouped[METRICS].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n_seeds"] = grouped["seed"].nunique()
    out["seeds"] = grouped["seed"].agg(lambda s: ",".join(str(v) for v in sorted(s)))
    out = out.reset_index()
    real = out[out["source"] == REAL_ONLY].set_index(["dataset", "model", "split", "share"])
    idx = pd.MultiIndex.from_frame(out[["dataset", "model", "split", "share"]])
    for m in TABLE_METRICS:
        base = real[f"{m}_mean"].reindex(idx).to_numpy()
        out[f"d{m}"] = out[f"{m}_mean"].to_numpy() - base
    return _sort(out)


def summarize_per_class(per_class: pd.DataFrame) -> pd.DataFrame:
    if per_class.empty:
        return per_class
    grouped = per_class.groupby(KEYS + ["class"], sort=False)
    out = grouped[["AP", "AP50"]].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["n_seeds"] = grouped["seed"].nunique()
    out["n_gt"] = grouped["n_gt"].first()
    return _sort(out.reset_index(), ["class"])


def summarize_pr(pr: pd.DataFrame) -> pd.DataFrame:
    """Mean-over-classes PR curve per cell, averaged over seeds."""
    if pr.empty:
        return pr
    out = pr.groupby(KEYS + ["recall"], sort=False)["precision"].mean().reset_index()
    return _sort(out, ["recall"])


def fmt_mean_std(mean: float, std: float, digits: int = 1) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    if std is None or np.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_delta(delta: float, digits: int = 1) -> str:
    return "–" if delta is None or np.isnan(delta) else f"{delta:+.{digits}f}"


def main_markdown(summary: pd.DataFrame, n_runs: int) -> str:
    """The main table: one section per (dataset, model, split), rows = source × share."""
    lines = [
        "# Detection results: real only vs real + synthetic",
        "",
        f"COCO AP (%) from pycocotools on the real test scans, mean ± std over seeds; "
        f"Δ AP = mean AP minus real-only mean AP at the same share. {n_runs} evaluated runs "
        "(results/runs/ → results/metrics/).",
    ]
    for (dataset, model, split), df in summary.groupby(["dataset", "model", "split"], sort=False):
        table = pd.DataFrame({
            "source": df["source"].map(source_label),
            "real data (%)": df["share"].map(share_label),
            **{f"{m} (%)": [fmt_mean_std(a, b) for a, b in zip(df[f"{m}_mean"], df[f"{m}_std"], strict=True)]
               for m in TABLE_METRICS},
            "Δ AP": [("–" if s == REAL_ONLY else fmt_delta(d)) for s, d in zip(df["source"], df["dAP"], strict=True)],
            "seeds": df["seeds"],
        })
        lines += ["", f"## {dataset} · {model} · split `{split}`", "", table.to_markdown(index=False)]
    return "\n".join(lines) + "\n"


def per_class_markdown(pc: pd.DataFrame) -> str:
    """Per-class AP (%): one table per (dataset, model, split, share), classes × sources."""
    lines = ["# Per-class AP (%)", "", "mean ± std over seeds, pycocotools AP@[.5:.95] per category."]
    if pc.empty:
        return "\n".join(lines) + "\n"
    for (dataset, model, split, share), df in pc.groupby(["dataset", "model", "split", "share"], sort=False):
        df = df.assign(cell=[fmt_mean_std(a, b) for a, b in zip(df["AP_mean"], df["AP_std"], strict=True)])
        table = df.pivot(index="class", columns="source", values="cell")
        table = table[[s for s in source_order(df["source"]) if s in table.columns]]
        table.columns = [source_label(s, prefix="+ ") for s in table.columns]
        lines += ["", f"## {dataset} · {model} · split `{split}` · {share_label(share)} % real", "",
                  table.reset_index().to_markdown(index=False)]
    return "\n".join(lines) + "\n"


def metrics_summary(summary: pd.DataFrame, n_runs: int) -> dict[str, Any]:
    """``results/metrics.json``: flat cells keyed ``dataset/model/split/source/pSHARE``."""
    cells = {}
    for row in summary.itertuples(index=False):
        key = f"{row.dataset}/{row.model}/{row.split}/{row.source}/p{share_label(row.share)}"
        cell: dict[str, Any] = {}
        for m in TABLE_METRICS:
            cell[m] = _round(getattr(row, f"{m}_mean"))
            cell[f"{m}_std"] = _round(getattr(row, f"{m}_std"))
            cell[f"d{m}"] = _round(getattr(row, f"d{m}"))
        cell["n_seeds"] = int(row.n_seeds)
        cells[key] = cell
    return {"unit": "percent (COCO AP x 100, pycocotools)", "n_runs": n_runs, "cells": cells}


def headline(summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The headline metrics, for ``dvc metrics show`` / ``diff``: one small file per
    (model, split, source), path ``<model>/<split>/<source>.json``, holding mean AP over seeds
    and ΔAP vs real-only at each share (``{"p10": {"AP": …, "dAP": …}}``; real-only has no Δ).

    One file per arm because DVC prints one row per file and one column per key: rows =
    arms, columns = shares, which stays one screen as the matrix grows, where one file of every
    cell was one row hundreds of columns wide. The dataset is the run's own (one per run);
    ``metrics.json`` keeps every cell with its spread for plots and tables."""
    files: dict[str, dict[str, Any]] = {}
    for row in summary.itertuples(index=False):
        cell: dict[str, Any] = {"AP": _round(row.AP_mean)}
        if row.source != REAL_ONLY:
            cell["dAP"] = _round(row.dAP)
        files.setdefault(f"{row.model}/{row.split}/{row.source}.json", {})[f"p{share_label(row.share)}"] = cell
    return files


def write_headline(summary: pd.DataFrame, folder: Path) -> None:
    """Write :func:`headline` into ``folder`` (written whole under a temporary name, then
    renamed, so an arm dropped from the matrix leaves no file behind)."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel, data in headline(summary).items():
        write_json(tmp / rel, data)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _round(v: float) -> float | None:
    return None if v is None or np.isnan(v) else round(float(v), 3)


def map_vs_share_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Long table for ``dvc plots`` (x = share, y = AP) and the mAP-vs-share figure."""
    cols = {"AP_mean": "AP", "AP_std": "AP_std", "AP50_mean": "AP50", "AP50_std": "AP50_std"}
    return summary[["dataset", "model", "split", "source", "share", *cols]].rename(columns=cols)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.4f")


def aggregate(metrics_dir: str | os.PathLike, out_dir: str | os.PathLike) -> pd.DataFrame:
    """Read ``metrics_dir``, write ``out_dir/{metrics.json, tables/, plots/}``; returns the summary.

    Files: ``metrics.json``; ``tables/main.{csv,md}``, ``tables/per_class.{csv,md}``;
    ``plots/map_vs_share.{png,csv}``, ``plots/per_class_ap.png``, ``plots/pr_curves.{png,csv}``;
    ``headline/<model>/<split>/<source>.json`` (:func:`headline`).
    """
    from xsyn.report.plots import write_plots

    out_dir = Path(out_dir)
    files = find_metric_files(metrics_dir)
    if not files:
        raise MetricsError(f"{metrics_dir}: no metrics files (run `xsyn evaluate` first)")
    metrics = load_metrics(files)
    n_runs = len(files)
    summary = summarize(metrics.runs)
    pc = summarize_per_class(metrics.per_class)
    pr = summarize_pr(metrics.pr)
    map_table = map_vs_share_table(summary)

    tables, plots = out_dir / "tables", out_dir / "plots"
    _write_csv(summary, tables / "main.csv")
    write_text(tables / "main.md", main_markdown(summary, n_runs))
    _write_csv(pc, tables / "per_class.csv")
    write_text(tables / "per_class.md", per_class_markdown(pc))
    _write_csv(map_table, plots / "map_vs_share.csv")
    _write_csv(pr, plots / "pr_curves.csv")
    write_plots(map_table, pc, pr, plots)
    write_json(out_dir / "metrics.json", metrics_summary(summary, n_runs))
    write_headline(summary, out_dir / "headline")
    return summary
