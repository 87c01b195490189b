"""How tables and plots name the detector sources and shares (one place for both)."""

from __future__ import annotations

from collections.abc import Iterable

from xsyn.data.contract import share_tag
from xsyn.methods import REAL_ONLY, REAL_REPEAT

share_label = share_tag  # "10", "2.5": the same spelling as the results paths


def source_order(sources: Iterable[str]) -> list[str]:
    """Real-only first, then the others alphabetically."""
    uniq = sorted(set(sources))
    return ([REAL_ONLY] if REAL_ONLY in uniq else []) + [s for s in uniq if s != REAL_ONLY]


def source_label(source: str, prefix: str = "real + ") -> str:
    """``none`` → ``real only``; ``real-repeat`` → ``real repeated`` (nothing is added to the real
    scans); ``xsyn-a`` → ``real + xsyn-a`` (or another ``prefix``)."""
    if source == REAL_ONLY:
        return "real only"
    return "real repeated" if source == REAL_REPEAT else f"{prefix}{source}"
