"""Code fingerprints: which modules a command runs, and that an edit moves exactly its dependents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xsyn import fingerprint as fp
from xsyn.cli import COMMANDS


def names(command: str) -> set[str]:
    table = fp.modules()
    return fp.closure([*fp.ENTRY, fp.command_module(command)], table)


def test_synthesis_runs_car_and_the_upstream_commands_do_not():
    assert "xsyn.synthesis.car" in names("synthesize")
    for command in ("phantom", "prepare", "finetune", "candidates", "train-detector", "evaluate", "aggregate"):
        assert "xsyn.synthesis.car" not in names(command), command


def test_lazy_and_dynamic_imports_count():
    # aggregate imports the plots module inside a function
    assert "xsyn.report.plots" in names("aggregate")
    # prepare picks its importer by name (importlib): every importer counts
    importers = {m for m in fp.modules() if m.startswith("xsyn.data.importers.")}
    assert importers and importers <= names("prepare")


def test_packages_on_the_way_count_and_the_cli_does_not_pull_every_command():
    got = names("gather")
    assert {"xsyn", "xsyn.commands", "xsyn.commands.gather", "xsyn.cli"} <= got
    assert "xsyn.commands.finetune" not in got and "xsyn.synthesize" not in got


def test_unknown_command_is_named():
    with pytest.raises(KeyError, match="nope"):
        fp.code_fingerprint("nope")


def test_an_edit_changes_the_fingerprint_of_its_dependents_only(tmp_path):
    copy = tmp_path / "xsyn"
    shutil.copytree(fp.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))

    def digests(root: Path) -> dict[str, str]:
        table = fp.modules(root)
        return {c: fp.fingerprint(fp.closure([*fp.ENTRY, fp.command_module(c)], table), table) for c in COMMANDS}

    before = digests(copy)
    assert before == {c: fp.code_fingerprint(c) for c in COMMANDS}  # independent of where it lives
    car = copy / "synthesis" / "car.py"
    car.write_text(car.read_text() + "\n# a comment\n")
    after = digests(copy)
    changed = {c for c in COMMANDS if before[c] != after[c]}
    assert changed == {"synthesize"}, changed
