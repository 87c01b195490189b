"""A fresh copy of the repository to run the workflow in, as a clone would have it.

Shared by the end-to-end tests (reduced smoke run, paper stand-in run): the copy holds the
tracked and untracked-but-not-ignored files (``config/*.yaml`` stay links), commands run
with the venv's tools first on ``PATH``, a socket guard that logs any network connection
(``netguard``) and a cache inside the workspace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NETGUARD = Path(__file__).resolve().parent / "netguard"


def tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


def copy_repo(dest: Path) -> Path:
    for rel in tracked_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)  # config/*.yaml stay links, as in a clone
    return dest


def git_commit_all(workspace: Path, message: str = "init") -> None:
    env = workflow_env(workspace)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message]):
        subprocess.run(cmd, cwd=workspace, check=True, env=env, capture_output=True)


def workflow_env(workspace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "YOLO_", "XSYN_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # the copy's own package runs (its rules' commands and the Snakefile read the same code, as
    # in a clone with `pip install -e .`), so an edit in the copy is what the workflow sees
    env["PYTHONPATH"] = os.pathsep.join([str(NETGUARD), str(workspace)])
    env["XSYN_NET_LOG"] = str(workspace / "network.log")
    env["XSYN_CACHE"] = str(workspace / ".cache" / "xsyn")
    return env


def run(cmd: list[str], workspace: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=workspace, env=workflow_env(workspace), capture_output=True,
                          text=True, **kw)


def snakemake(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    return run([str(BIN / "snakemake"), "--cores", "2", *args], workspace)


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """The job counts of a ``snakemake -n`` run (its "Job stats" table), ``{}`` for none."""
    counts: dict[str, int] = {}
    if "Job stats:" not in dry_run_output:
        return counts
    table = dry_run_output.split("Job stats:", 1)[1]
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not match:
            break
        if match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
