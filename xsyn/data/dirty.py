"""Dirty entries: the known-benign defects of real dataset copies, fixed or skipped and reported.

Real copies of the public X-ray datasets carry defects that their own loaders tolerate:
OPIXray boxes a few pixels outside the image (negative corners included; the official
loader clamps them), CLCXray's image record whose ``file_name`` is ``".png"``
(GreysonPhoenix/CLCXray issue #2), SIXray XMLs whose image is absent and images without
XML, class names that differ only in case (loaders of SIXray lower-case them). Stopping
a 100k-image import for one of these helps nobody, and hiding it helps nobody either.
So each is fixed (*clamped*, *folded*) or *skipped*, and recorded here with the file,
the entry and the reason; ``prepare_report.json`` lists them and the printed summary
counts them. With ``strict`` the first one is an error instead.

The list of reasons is closed (:data:`REASONS`). Everything else (unparseable files,
truncated images, unknown classes, duplicate ids, paths escaping the root, a box far
outside its image) is not benign and stays an error naming the file and the entry.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from xsyn.data.contract import DatasetError

ACTIONS = ("clamped", "skipped", "folded")

# reason → (action, what it means). The README's "Your own data" section lists the same.
REASONS: dict[str, tuple[str, str]] = {
    "box_outside": ("clamped", "box reaching at most clamp_px outside the image, clamped into it"),
    "empty_file_name": ("skipped", "image record whose file name is empty (e.g. '.png'), skipped with its boxes"),
    "image_missing": ("skipped", "annotation file whose image is absent"),
    "no_annotation": ("skipped", "image without an annotation file"),
    "nameless_object": ("skipped", "object without a class name"),
    "class_case": ("folded", "class name that differs from the dataset's only in case"),
    "file_name_case": ("folded", "image found under a name that differs only in case"),
    "list_entry_missing": ("skipped", "subset-list entry naming no image of its split"),
    "listed_twice": ("skipped", "image named by two subset lists: kept in the first"),
}

# At most this many entries per reason are listed in the report (the counts stay exact):
# a full SIXray copy holds about a million negative images without XML.
LISTED_PER_REASON = 10_000
UNASSIGNED = "unassigned"  # split of an entry whose image never got one (dropped before splitting)


@dataclass(frozen=True)
class DirtyEntry:
    """One benign defect: ``where`` names the file and entry, ``detail`` what was done."""

    reason: str
    where: str
    detail: str
    split: str | None = None  # the source's split, when the entry's image never got one
    cls: str | None = None
    image_id: int | None = None  # a kept image: its split is resolved after splitting

    @property
    def action(self) -> str:
        return REASONS[self.reason][0]

    def line(self) -> str:
        return f"{self.where}: {self.detail}"


@dataclass
class DirtyLog:
    """The dirty entries of one import; ``strict`` makes :meth:`add` raise instead of record.

    ``entries`` holds the first :data:`LISTED_PER_REASON` entries of each reason; the rest
    are only counted (by reason, split, class and image), so a million negatives cost
    counters, not a million records.
    """

    strict: bool = False
    entries: list[DirtyEntry] = field(default_factory=list)
    listed: Counter = field(default_factory=Counter)  # reason → entries listed
    unlisted: Counter = field(default_factory=Counter)  # (reason, split, cls, image_id) → n

    def add(self, reason: str, where: str, detail: str, *, split: str | None = None,
            cls: str | None = None, image_id: int | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown dirty-entry reason {reason!r} (known: {', '.join(REASONS)})")
        entry = DirtyEntry(reason, where, detail, split, cls, image_id)
        if self.strict:
            raise DatasetError(f"{entry.line()} [{reason}: {REASONS[reason][1]}; strict mode stops at the first]")
        if self.listed[reason] < LISTED_PER_REASON:
            self.listed[reason] += 1
            self.entries.append(entry)
        else:
            self.unlisted[(reason, split, cls, image_id)] += 1

    @property
    def total(self) -> int:
        return len(self.entries) + sum(self.unlisted.values())

    def lines(self, action: str) -> list[str]:
        """One line per listed entry of ``action`` (``"skipped"``: what the summary calls skipped entries)."""
        return [e.line() for e in self.entries if e.action == action]

    def report(self, split_of: Mapping[int, str]) -> dict[str, Any]:
        """The ``dirty`` section of ``prepare_report.json``.

        ``split_of`` maps a kept image id to its split (test parts before ``test``);
        entries of dropped images keep their source split, or ``"unassigned"`` when it had none.
        """
        def split(s: str | None, image_id: int | None) -> str:
            if image_id is not None and image_id in split_of:
                return split_of[image_id]
            return s or UNASSIGNED

        counts: dict[str, Counter] = {a: Counter() for a in ACTIONS}
        per_split: dict[str, Counter] = defaultdict(Counter)
        per_class: dict[str, Counter] = defaultdict(Counter)
        rows = [((e.reason, e.split, e.cls, e.image_id), 1) for e in self.entries] + list(self.unlisted.items())
        for (reason, s, cls, image_id), n in rows:
            counts[REASONS[reason][0]][reason] += n
            per_split[split(s, image_id)][reason] += n
            if cls:
                per_class[cls][reason] += n
        entries = [{"action": e.action, "reason": e.reason, "split": split(e.split, e.image_id), "class": e.cls,
                    "where": e.where, "detail": e.detail} for e in self.entries]
        left_out: Counter = Counter()
        for (reason, *_), n in self.unlisted.items():
            left_out[reason] += n
        return {
            "strict": self.strict,
            "total": self.total,
            "counts": {a: dict(sorted(c.items())) for a, c in counts.items()},
            "per_split": {s: dict(sorted(c.items())) for s, c in sorted(per_split.items())},
            "per_class": {k: dict(sorted(c.items())) for k, c in sorted(per_class.items())},
            "reasons": {r: {"action": a, "meaning": m} for r, (a, m) in REASONS.items()},
            "entries": entries,
            **({"left_out": dict(sorted(left_out.items()))} if left_out else {}),
        }
