"""The CLI surface and configuration: help lists every command; bad config names the key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from xsyn.cli import COMMANDS, main
from xsyn.config import ConfigError, deep_merge, load_config, parse_override


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "xsyn", *args], capture_output=True, text=True)


def test_help_lists_every_subcommand_with_its_purpose():
    out = run_cli("--help")
    assert out.returncode == 0
    for name, (_, purpose) in COMMANDS.items():
        assert name in out.stdout
        assert purpose.split()[0] in out.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_has_help(command):
    out = run_cli(command, "--help")
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout


def test_smoke_and_paper_profiles_validate():
    smoke = load_config()
    paper = load_config(["paper"])
    assert smoke["profile"] == "smoke" and paper["profile"] == "paper"
    assert paper["synthesis"]["steps"] == 50 and paper["synthesis"]["guidance_scale"] == 7.5
    assert paper["synthesis"]["bom"]["alpha"] == 0.3
    assert paper["finetune"]["learning_rate"] == 5e-5


def test_unknown_key_is_named(capsys):
    with pytest.raises(ConfigError, match=r"phantom: Additional properties .*'photon_count'"):
        load_config(overrides=["phantom.photon_count=3"])
    assert main(["config", "--set", "synthesis.bom.alpha=2"]) == 2
    assert "synthesis.bom.alpha" in capsys.readouterr().err


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"synthesis\.steps"):
        load_config(overrides=["synthesis.steps=many"])


def test_profile_file_merges_over_defaults(tmp_path):
    prof = tmp_path / "mine.yaml"
    prof.write_text(yaml.safe_dump({"synthesis": {"car": {"enabled": False}}}))
    cfg = load_config([prof], json_overrides=['{"seed": 3}'])
    assert cfg["synthesis"]["car"]["enabled"] is False
    assert cfg["synthesis"]["bom"]["enabled"] is True  # untouched sibling survives the merge
    assert cfg["seed"] == 3


def test_malformed_profile_names_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("synthesis: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config([bad])


def test_deep_merge_and_override_parsing():
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert parse_override("synthesis.car.enabled=false") == (["synthesis", "car", "enabled"], False)
    with pytest.raises(ConfigError):
        parse_override("no-equals-sign")


def test_import_sets_offline_environment():
    code = "import os, xsyn; print(os.environ['HF_HUB_OFFLINE'], os.environ['YOLO_OFFLINE'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["1", "1"], out.stderr


def test_one_file_per_default():
    """The workflow's profile and schema paths are links to the package's files, not copies."""
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    for link, target in (("config/smoke.yaml", "xsyn/profiles/smoke.yaml"),
                         ("config/paper.yaml", "xsyn/profiles/paper.yaml"),
                         ("workflow/schemas/config.schema.yaml", "xsyn/schemas/config.schema.yaml")):
        assert (repo / link).is_symlink() and (repo / link).resolve() == (repo / target).resolve(), link


def test_method_names_come_from_the_registry():
    from xsyn.config import load_schema
    from xsyn.methods import METHODS

    enum = load_schema()["properties"]["synthesis"]["properties"]["methods"]["items"]["enum"]
    assert enum == list(METHODS)
    with pytest.raises(ConfigError, match=r"synthesis\.methods\.0: 'nope' is not one of"):
        load_config(overrides=["synthesis.methods=[nope]"])


def test_every_model_gets_its_own_runs():
    """Run names come from each entry alone: a .pt beside the .yaml of the same stem is its own
    model (it used to collapse into the .yaml's runs, silently); a real clash stops at start-up."""
    from xsyn.methods import model_runs

    assert model_runs(["yolov8n.yaml", "rtdetr-l.yaml", "some/yolov8n.pt"]) == {
        "yolov8n": "yolov8n.yaml", "rtdetr-l": "rtdetr-l.yaml", "yolov8n.pt": "some/yolov8n.pt"}
    with pytest.raises(ConfigError, match="share the run name 'yolov8n.pt'"):
        load_config(overrides=["detection.models=[a/yolov8n.pt, b/yolov8n.pt]"])
    cfg = load_config(overrides=["detection.models=[a/yolov8n.pt, {name: coco-v8n, file: b/yolov8n.pt}]"])
    assert list(model_runs(cfg["detection"]["models"])) == ["yolov8n.pt", "coco-v8n"]
