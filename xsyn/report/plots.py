"""Figures of the aggregated results (matplotlib, Agg): mAP vs share of real data per
source (the authors' main figure), per-class AP bars and mean PR curves.

Every function takes the summary tables of :mod:`xsyn.report.aggregate` and writes one
PNG atomically; panels are one per (dataset, model, split[, share]) so a matrix with
several detectors or test splits still gives one file per figure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from xsyn.io import atomic_path  # noqa: E402
from xsyn.methods import REAL_ONLY  # noqa: E402
from xsyn.report.labels import share_label, source_label, source_order  # noqa: E402


def _colours(sources: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {s: ("black" if s == REAL_ONLY else cmap(i % 10)) for i, s in enumerate(sources)}


def _panels(n: int, width: float = 5.0, height: float = 3.6) -> tuple[plt.Figure, list[plt.Axes]]:
    ncols = min(n, 2)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def save(fig: plt.Figure, path: str | os.PathLike) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_map_vs_share(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """AP (%) against the share of real training data, one line per synthetic source."""
    groups = list(table.groupby(["dataset", "model", "split"], sort=False))
    fig, axes = _panels(max(len(groups), 1))
    colours = _colours(source_order(table["source"]))
    for ax, ((dataset, model, split), df) in zip(axes, groups, strict=False):
        for source in source_order(df["source"]):
            d = df[df["source"] == source].sort_values("share")
            ax.errorbar(d["share"], d["AP"], yerr=d["AP_std"].fillna(0), marker="o", capsize=3,
                        color=colours[source], label=source_label(source),
                        linestyle="--" if source == REAL_ONLY else "-")
        shares = sorted(df["share"].unique())
        if len(shares) > 1 and shares[-1] / shares[0] >= 10:
            ax.set_xscale("log")
        share_axes(ax, shares, "AP (%)", f"{dataset} · {model} · {split}", legend_size=8)
        ax.minorticks_off()
    save(fig, path)


def share_axes(ax: plt.Axes, shares: list[float], ylabel: str, title: str, legend_size: int) -> None:
    """The labelling every AP-vs-share panel shares (the map table's and the study's)."""
    ax.set_xticks(shares, [share_label(s) for s in shares])
    ax.set_xlabel("real training data (%)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def plot_per_class(pc: pd.DataFrame, path: str | os.PathLike) -> None:
    """Grouped bars: per-class AP (%) for each source, one panel per share."""
    if pc.empty:
        fig, _ = _panels(1)
        save(fig, path)
        return
    groups = list(pc.groupby(["dataset", "model", "split", "share"], sort=False))
    n_classes = pc["class"].nunique()
    fig, axes = _panels(len(groups), width=max(5.0, 0.9 * n_classes + 2))
    colours = _colours(source_order(pc["source"]))
    for ax, ((dataset, model, split, share), df) in zip(axes, groups, strict=False):
        classes = list(dict.fromkeys(df["class"]))
        sources = source_order(df["source"])
        width = 0.8 / len(sources)
        x = np.arange(len(classes))
        for i, source in enumerate(sources):
            d = df[df["source"] == source].set_index("class").reindex(classes)
            ax.bar(x + (i - (len(sources) - 1) / 2) * width, d["AP_mean"].fillna(0), width,
                   yerr=d["AP_std"].fillna(0), capsize=2, color=colours[source], label=source_label(source))
        ax.set_xticks(x, classes, rotation=30, ha="right")
        ax.set_ylabel("AP (%)")
        ax.set_title(f"{dataset} · {model} · {split} · {share_label(share)} % real")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)


def plot_pr_curves(pr: pd.DataFrame, path: str | os.PathLike) -> None:
    """Mean-over-classes precision–recall at IoU 0.5, one line per source, panel per share."""
    if pr.empty:
        fig, _ = _panels(1)
        save(fig, path)
        return
    groups = list(pr.groupby(["dataset", "model", "split", "share"], sort=False))
    fig, axes = _panels(len(groups))
    colours = _colours(source_order(pr["source"]))
    for ax, ((dataset, model, split, share), df) in zip(axes, groups, strict=False):
        for source in source_order(df["source"]):
            d = df[df["source"] == source].sort_values("recall")
            ax.plot(d["recall"], d["precision"], color=colours[source], label=source_label(source),
                    linestyle="--" if source == REAL_ONLY else "-")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision (IoU 0.5)")
        ax.set_title(f"{dataset} · {model} · {split} · {share_label(share)} % real")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save(fig, path)


def write_plots(map_table: pd.DataFrame, pc: pd.DataFrame, pr: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    out_dir = Path(out_dir)
    paths = [out_dir / "map_vs_share.png", out_dir / "per_class_ap.png", out_dir / "pr_curves.png"]
    plot_map_vs_share(map_table, paths[0])
    plot_per_class(pc, paths[1])
    plot_pr_curves(pr, paths[2])
    return paths
