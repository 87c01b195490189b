"""One config contract: a command reads only what its rule hands it, and no code restates a default.

- every rule that runs an ``xsyn`` command passes exactly the keys that command reads for
  that job (``xsyn.jobs``), checked on the planned shell commands of the smoke DAG and of
  the paper DAG (placeholders for the downloads: a dry run only looks at paths);
- a command handed a fragment without a key it reads refuses to start, and reading a key
  it was not handed raises, naming the key;
- no ``.get(<config key>, <fallback>)`` anywhere in ``xsyn/`` (the profile YAML and its
  schema are the one place a default lives).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xsyn.cli import main
from xsyn.config import ConfigError, ConfigSection, load_config
from xsyn.jobs import MATRIX, WORKFLOW, job_config, leaves, reads
from xsyn.methods import METHODS

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
SMOKE = REPO / "xsyn" / "profiles" / "smoke.yaml"

# .get(key, fallback) on dicts that are not configuration, each with the reason
NOT_CONFIG = {
    ("xsyn/baselines/tip.py", "kind"): "a benign-region record of the dataset",
    ("xsyn/data/contract.py", "name"): "a COCO category record",
    ("xsyn/detection/train.py", "ema"): "an ultralytics checkpoint",
    ("xsyn/synthesis/pipeline.py", "enabled"): "XsynPipeline's car/bom argument: {alpha, when} asks for BOM",
    ("xsyn/versioning.py", "config"): "config/run.yaml's record of a run: the --config values it was given",
}


def config_keys(tree, out: set[str] | None = None) -> set[str]:
    out = set() if out is None else out
    for key, value in tree.items():
        out.add(key)
        if isinstance(value, dict):
            config_keys(value, out)
        for item in value if isinstance(value, list) else ():
            if isinstance(item, dict):
                config_keys(item, out)
    return out


def restated_defaults(source: str, keys: set[str]) -> list[tuple[int, str, str]]:
    """``(line, key, code)`` of every ``X.get("<config key>", ...)`` / ``X.get("<config key>")``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in keys):
            found.append((node.lineno, node.args[0].value, ast.unparse(node)))
    return found


def test_the_default_finder_finds_one():
    keys = config_keys(yaml.safe_load(SMOKE.read_text()))
    code = 'def f(ft):\n    return ft.get("warmup_steps", 0) + ft["batch_size"] + d.get("other", 1)\n'
    assert [(line, key) for line, key, _ in restated_defaults(code, keys)] == [(2, "warmup_steps")]


def test_no_config_default_is_restated_in_code():
    keys = config_keys(yaml.safe_load(SMOKE.read_text()))
    found = []
    for path in sorted((REPO / "xsyn").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for line, key, code in restated_defaults(path.read_text(), keys):
            if (rel, key) not in NOT_CONFIG:
                found.append(f"{rel}:{line}: {code}")
    assert found == [], "index config keys; defaults live in xsyn/profiles/smoke.yaml:\n" + "\n".join(found)


def test_no_table_of_defaults_in_code():
    """A dict of fallbacks merged under the config (``{**DEFAULTS, **cfg}``) restates it too."""
    found = []
    for path in sorted((REPO / "xsyn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                if isinstance(target, ast.Name) and "DEFAULT" in target.id and isinstance(node.value, ast.Dict):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {target.id}")
    assert found == []


def test_a_section_never_falls_back():
    cfg = ConfigSection({"synthesis": {"steps": 3}}, reader="xsyn test")
    assert cfg["synthesis"]["steps"] == 3 and cfg["synthesis"].get("steps", 50) == 3
    with pytest.raises(ConfigError, match=r"xsyn test reads synthesis\.guidance_scale"):
        cfg["synthesis"]["guidance_scale"]
    with pytest.raises(ConfigError, match=r"synthesis\.eta"):
        cfg["synthesis"].get("eta", 0.0)
    assert json.loads(json.dumps(cfg)) == {"synthesis": {"steps": 3}}


def test_matrix_is_no_job_s_business():
    cfg = load_config(["paper"])
    for command in ("finetune", "samples", "candidates", "train-detector", "evaluate"):
        assert not set(leaves(job_config(cfg, command))) & set(MATRIX), command
    for method in cfg["synthesis"]["methods"]:
        frag = job_config(cfg, "synthesize", method)
        assert not set(leaves(frag)) & set(MATRIX), method
    # an ablation without CAR does not read CAR's knobs (changing them re-runs nothing of it)
    assert "cue" not in job_config(cfg, "synthesize", "xsyn-a-nocar")["synthesis"]["car"]
    assert job_config(cfg, "synthesize", "xsyn-a")["synthesis"]["car"]["cue"] == "attention"
    assert job_config(cfg, "synthesize", "xsyn-a")["generator"] == {"resolution": 512}


def test_no_study_job_reads_the_matrix_or_the_workflow_s_keys():
    """The study's matrix (ablations, per_share) and the budget data's config are the
    workflow's: no job of any arm or share is handed them, so growing the study re-runs nothing."""
    cfg = load_config(["study"])
    det = cfg["detection"]
    outside = (*MATRIX, *WORKFLOW)
    jobs = [(c, None) for c in ("finetune", "samples", "candidates", "evaluate", "compare")]
    jobs += [("synthesize", m) for m in METHODS] + [("train-detector", s) for s in
                                                    {*det["sources"], *det["ablations"]["sources"], "xsyn-a+budget"}]
    for command, arm in jobs:
        for share in (None, *det["shares"]):
            paths = leaves(job_config(cfg, command, arm, share=share))
            assert not [p for p in paths if p.startswith(outside)], (command, arm, share)
    assert "detection.ablations.sources" in leaves(cfg)  # the check above looks at real paths


def test_a_fragment_without_a_read_key_is_refused(tmp_path, capsys):
    """What the paper path did silently: synthesis handed no generator section sampled at the
    smoke profile's 128 px. Now the command names the key and does nothing."""
    frag = job_config(load_config(["paper"]), "synthesize", "xsyn-a")
    del frag["generator"]
    rc = main(["synthesize", "--method", "xsyn-a", "--dataset", str(tmp_path), "--generator", str(tmp_path),
               "--out", str(tmp_path / "s"), "--config-json", json.dumps(frag)])
    assert rc == 2
    assert "generator.resolution" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------- every rule


def placeholders(root: Path) -> Path:
    """Paths shaped like the paper profile's downloads (a dry run only checks they exist)."""
    for folder in ("PIDray", "gligen-1-4-generation-text-box", "sam-vit-huge"):
        (root / folder).mkdir(parents=True)
        (root / folder / "placeholder").write_text("")
    for pt in ("yolov8s.pt", "rtdetr-l.pt"):
        (root / pt).write_bytes(b"")
    overlay = {
        "device": "cpu",
        "dataset": {"source": str(root / "PIDray")},
        "generator": {"resolution": 64, "pretrained": {"pipeline": str(root / "gligen-1-4-generation-text-box")}},
        "synthesis": {"shards": 2, "car": {"sam_path": str(root / "sam-vit-huge")}},
        "detection": {"models": [str(root / "yolov8s.pt"), "rtdetr-l.yaml",
                                 {"name": "rtdetr-l-coco", "file": str(root / "rtdetr-l.pt")}],
                      "shares": [10], "seeds": [0]},
    }
    path = root / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def planned_commands(cwd: Path, *args: str) -> list[list[str]]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--cores", "1", *args], cwd=cwd, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    commands = []
    for line in out.stdout.splitlines():
        line = line.removeprefix("Shell command: ").strip()
        if line.startswith("xsyn "):
            commands.append(shlex.split(line.split(" 2>")[0].split(" > ")[0]))
    return commands


@pytest.fixture
def checkout(tmp_path) -> Path:
    for name in ("Snakefile", "workflow", "config", "assets", "xsyn"):
        src, dest = REPO / name, tmp_path / "repo" / name
        if src.is_dir():
            shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
    return tmp_path / "repo"


def job_share(argv: list[str]) -> float | None:
    """A job's detection share: ``--share``, or the ``p{share}`` level of its generator or
    output path (per-share fine-tunes, synthetic sets and sample grids)."""
    if "--share" in argv:
        return float(argv[argv.index("--share") + 1])
    for flag in ("--out", "--generator"):
        if flag in argv and (m := re.search(r"/p(\d+(?:\.\d+)?)(?:/|$)", argv[argv.index(flag) + 1])):
            return float(m.group(1))
    return None


def job_arm(argv: list[str]) -> str | None:
    """What a job's keys depend on besides its command: a synthesis method or detector source."""
    flag = {"synthesize": "--method", "train-detector": "--source"}.get(argv[1])
    return argv[argv.index(flag) + 1] if flag else None


@pytest.mark.parametrize("profile", ["smoke", "paper", "study"])
def test_every_rule_passes_exactly_what_its_command_reads(checkout, tmp_path, profile):
    if profile == "smoke":
        args, cfg = (), load_config()
    elif profile == "paper":
        overlay = placeholders(tmp_path / "downloads")
        args = ("--configfile", "config/paper.yaml", str(overlay))
        cfg = load_config(["paper", overlay])
    else:
        args, cfg = ("--configfile", "config/study.yaml"), load_config(["study"])
    budget_cfg = load_config([str(checkout / cfg["detection"]["budget"]["config"])]) if profile == "study" else None
    commands = planned_commands(checkout, *args)
    seen, shares = set(), set()
    for argv in commands:
        command = argv[1]
        fragments = [json.loads(argv[i + 1]) for i, a in enumerate(argv) if a == "--config-json"]
        arm, share = job_arm(argv), job_share(argv)
        seen.add(command if arm is None or command == "train-detector" else f"{command} {arm}")
        if not reads(command, arm):
            assert fragments == [], f"{command} reads no configuration, yet its rule passes some"
            continue
        assert len(fragments) == 1, argv
        # the information-budget control's data is remade from the config that made it
        run_cfg = budget_cfg if "data/raw/budget" in argv else cfg
        assert fragments[0] == job_config(run_cfg, command, arm, share=share), f"{command} {arm or ''} {share}"
        if command in ("finetune", "synthesize") and share is not None:
            shares.add(share)
    expected = {"prepare", "finetune", "samples", "candidates", "train-detector", "evaluate", "config",
                "gather", "show", "aggregate", "compare", *(f"synthesize {m}" for m in cfg["synthesis"]["methods"])}
    if profile != "paper":
        expected.add("phantom")
    assert expected <= seen, expected - seen
    if profile == "paper":  # the resolution synthesis samples at is the run's, not the smoke default
        synth = [a for a in commands if a[1] == "synthesize" and "gligen-plain" in a]
        assert json.loads(synth[0][synth[0].index("--config-json") + 1])["generator"]["resolution"] == 64
    if profile == "study":  # one fine-tune and one set per share, each on that share's subset
        assert shares == {float(s) for s in cfg["detection"]["shares"]}
        tunes = {json.loads(a[a.index("--config-json") + 1])["finetune"]["train_split"]
                 for a in commands if a[1] == "finetune"}
        assert tunes == {"train_p05", "train_p10", "train_p25"}
        assert sum("data/raw/budget" in a for a in commands) == 2  # budget phantom + prepare


def test_a_real_only_detector_reads_no_mix():
    """Tuning the mix re-runs the arms that mix, never real-only; only the budget arm reads its split."""
    cfg = load_config(["study"])
    real = job_config(cfg, "train-detector", "none")["detection"]
    assert not {"mix", "synthetic_repeat", "pretrain_synthetic", "budget"} & set(real)
    assert set(job_config(cfg, "train-detector", "real-repeat")["detection"]) - set(real) == {"mix"}
    assert "budget" not in job_config(cfg, "train-detector", "xsyn-a")["detection"]
    assert job_config(cfg, "train-detector", "xsyn-a+budget")["detection"]["budget"] == {"split": "train"}


def test_per_share_jobs_read_their_share_s_subset():
    cfg = load_config(["study"])
    assert job_config(cfg, "finetune", share=5)["finetune"]["train_split"] == "train_p05"
    assert job_config(cfg, "synthesize", "tip", share=25)["synthesis"]["source_split"] == "train_p25"
    smoke = load_config()  # no per_share: the configured splits, whatever the share
    assert job_config(smoke, "finetune", share=5)["finetune"]["train_split"] == smoke["finetune"]["train_split"]
