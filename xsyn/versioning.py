"""Snakemake runs, DVC versions: what keeps the two in step (DESIGN §6).

The Snakefile calls three things from here:

- :func:`overrides` at start-up: ``params.yaml``, the run's own values over the profile and
  its overlays, the file ``dvc exp run -S '++key=value'`` sets (experiments, in git).
- :func:`recorded_run` at start-up under DVC (``dvc repro``, ``dvc exp run``): the config
  files and ``--config`` values of the last complete run, so DVC re-runs *that* run (the
  paper or study profile, with its overlays), reading them afresh from their files.
- :func:`accept_pulled` at start-up otherwise: artifacts that ``dvc pull`` / ``dvc checkout``
  restored carry the time they were written, in no particular order, and Snakemake would
  redo a job whose input looks newer than its output. When DVC says the workspace matches
  its lock, they are current: every tracked file gets one timestamp and nothing is redone.
- :func:`finish` when a complete run succeeded: it writes :data:`RECORD` (the configuration
  the run merged, every section, and how it was given) and, unless DVC itself started the
  run, commits DVC's lock (``dvc commit``), so ``dvc status`` is clean after one command.

The record is what ``dvc.yaml`` reads its params from: the profile that ran is the one
versioned. Commit it with ``dvc.lock``. It is written, never read as configuration: the
values it holds come from the profiles and overlays it names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

RECORD = Path("config/run.yaml")
OVERRIDES = Path("params.yaml")  # DVC's default params file: `dvc exp run -S '++key=value'` writes here
STAGE = "workflow"  # the one stage of dvc.yaml
LOCK = Path("dvc.lock")
STAMP = Path(".snakemake/xsyn-accepted-lock")  # the dvc.lock whose artifacts Snakemake accepted

HEADER = """\
# The configuration of the last complete run of the workflow, written by that run
# (xsyn/versioning.py). DVC versions the run under these values (dvc.yaml: params), and
# `dvc repro` / `dvc exp run` run the same config files again. Commit it with dvc.lock.
# Change a run through its profile, an overlay or params.yaml, not here, e.g.
#   dvc exp run -S '++detection.epochs=60'
"""


def under_dvc(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether DVC started this process as a stage command (it sets ``DVC_STAGE``)."""
    return "DVC_STAGE" in environ


def recorded_run(root: Path = Path(".")) -> dict[str, Any]:
    """``{"configfiles": [...], "config": {...}}`` of the recorded run (none recorded: the
    default profile, nothing over it)."""
    path = root / RECORD
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    workflow = (data or {}).get("workflow") or {}
    return {"configfiles": list(workflow.get("configfiles") or []), "config": dict(workflow.get("config") or {})}


def overrides(root: Path = Path(".")) -> dict[str, Any]:
    """The values of :data:`OVERRIDES`, applied over the profile and overlays of every run.

    Read as YAML 1.2, the way DVC writes it (``dvc exp run -S`` round-trips the file with
    ruamel): a value such as ``no`` stays the string it was set as, where a YAML 1.1 reader
    (PyYAML, Snakemake's) would turn it into ``False``."""
    from ruamel.yaml import YAML

    path = root / OVERRIDES
    data = YAML(typ="safe", pure=True).load(path.read_text()) if path.is_file() else None
    return _plain(data or {})


def portable(path: str | os.PathLike, root: Path = Path(".")) -> str:
    """``path`` relative to the workspace when it lies inside it (so a clone can use it)."""
    path = Path(os.path.abspath(path))  # not resolve(): config/paper.yaml stays itself, not its link's target
    try:
        return str(path.relative_to(os.path.abspath(root)))
    except ValueError:
        return str(path)


def record(run: Mapping[str, Any], config: Mapping[str, Any], root: Path = Path(".")) -> str:
    """The text of :data:`RECORD` for a run given as ``run`` that merged ``config``."""
    body = {"workflow": {"configfiles": [portable(f, root) for f in run["configfiles"]],
                         "config": dict(run["config"])},
            **{k: v for k, v in config.items()}}
    return HEADER + yaml.safe_dump(_plain(body), sort_keys=False)


def _plain(value: Any) -> Any:
    """Mappings and sequences as dicts and lists (Snakemake's config holds its own types)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def dvc_available(root: Path = Path(".")) -> bool:
    return (root / ".dvc").is_dir() and shutil.which("dvc") is not None


def _dvc(args: Iterable[str], root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(["dvc", *args], cwd=root, env=env, capture_output=True, text=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def locked_outs(root: Path = Path(".")) -> list[Path]:
    """The paths ``dvc.lock`` pins for the stage (empty without a lock)."""
    path = root / LOCK
    if not path.is_file():
        return []
    stages = (yaml.safe_load(path.read_text()) or {})["stages"]  # DVC's lock, not our config
    return [root / o["path"] for o in stages[STAGE]["outs"]] if STAGE in stages else []


def accept_pulled(root: Path = Path(".")) -> bool:
    """Give every DVC-tracked artifact one timestamp when DVC says they match its lock and
    Snakemake has not accepted this lock yet (a clone after ``dvc pull``, a ``dvc checkout``).
    Returns whether it did. Cheap when nothing changed: it compares the lock with a stamp."""
    lock = _digest(root / LOCK)
    if not lock or not dvc_available(root) or (root / STAMP).is_file() and (root / STAMP).read_text() == lock:
        return False
    outs = locked_outs(root)
    if not outs or not all(p.exists() for p in outs):
        return False
    status = _dvc(["status", "--json", STAGE], root)
    if status.returncode != 0 or status.stdout.strip() not in ("{}", ""):
        return False  # not what the lock pins: Snakemake decides as usual
    now = time.time()
    for out in outs:
        for path in [out, *out.rglob("*")] if out.is_dir() else [out]:
            os.utime(path, (now, now), follow_symlinks=False)
    _stamp(lock, root)
    print(f"xsyn: the artifacts match {LOCK} (dvc status): accepted as current", file=sys.stderr)
    return True


def _stamp(lock: str, root: Path) -> None:
    (root / STAMP).parent.mkdir(parents=True, exist_ok=True)
    (root / STAMP).write_text(lock)


def finish(run: Mapping[str, Any], config: Mapping[str, Any], root: Path = Path(".")) -> None:
    """After a complete run: write :data:`RECORD`; outside DVC, commit the stage's lock."""
    (root / RECORD).write_text(record(run, config, root))
    if under_dvc():
        return  # DVC writes the lock itself when the command returns
    if not dvc_available(root):
        print("xsyn: no DVC here (.dvc/ or the dvc command is missing): nothing versioned", file=sys.stderr)
        return
    out = _dvc(["commit", "--force", STAGE], root)
    if out.returncode != 0:
        raise RuntimeError(f"dvc commit {STAGE} failed:\n{out.stdout}{out.stderr}")
    _stamp(_digest(root / LOCK), root)
    print(f"xsyn: versioned with DVC ({LOCK}, {RECORD}); `dvc push` sends the artifacts to the remote",
          file=sys.stderr)
