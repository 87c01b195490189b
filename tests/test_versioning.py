"""The run record DVC reads its params from, and how the Snakefile reads it back."""

from __future__ import annotations

import os

import yaml

from xsyn import versioning
from xsyn.config import load_config


def test_record_holds_every_section_and_how_the_run_was_given(tmp_path):
    (tmp_path / "config").mkdir()
    overlay = tmp_path / "mine.yaml"
    cfg = load_config(["paper"])
    run = {"configfiles": [tmp_path / "config" / "paper.yaml", overlay, "/elsewhere/x.yaml"],
           "config": {"detection": {"epochs": 3}}}
    (tmp_path / versioning.RECORD).write_text(versioning.record(run, cfg, tmp_path))
    data = yaml.safe_load((tmp_path / versioning.RECORD).read_text())
    assert {k: data[k] for k in cfg} == cfg
    assert data["workflow"]["configfiles"] == ["config/paper.yaml", "mine.yaml", "/elsewhere/x.yaml"]
    assert versioning.recorded_run(tmp_path) == {
        "configfiles": ["config/paper.yaml", "mine.yaml", "/elsewhere/x.yaml"],
        "config": {"detection": {"epochs": 3}}}


def test_a_link_stays_itself(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "paper.yaml").write_text("{}")
    (tmp_path / "config").mkdir()
    os.symlink("../profiles/paper.yaml", tmp_path / "config" / "paper.yaml")
    assert versioning.portable(tmp_path / "config" / "paper.yaml", tmp_path) == "config/paper.yaml"


def test_no_record_is_the_default_profile(tmp_path):
    assert versioning.recorded_run(tmp_path) == {"configfiles": [], "config": {}}


def test_under_dvc_is_dvcs_own_variable():
    assert versioning.under_dvc({"DVC_STAGE": "workflow"})
    assert not versioning.under_dvc({})


def test_accept_pulled_leaves_a_workspace_without_lock_alone(tmp_path):
    (tmp_path / ".dvc").mkdir()
    assert versioning.accept_pulled(tmp_path) is False


def test_overrides_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S` writes YAML 1.2: `no` is the string a YAML 1.1 reader would make False."""
    assert versioning.overrides(tmp_path) == {}
    (tmp_path / versioning.OVERRIDES).write_text("finetune:\n  mixed_precision: no\ndetection:\n  epochs: 10\n")
    assert versioning.overrides(tmp_path) == {"finetune": {"mixed_precision": "no"}, "detection": {"epochs": 10}}

