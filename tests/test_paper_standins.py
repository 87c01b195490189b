"""The paper profile's whole DAG on stand-ins of its downloads, and what each stage actually used.

``scripts/make_standins.py`` writes folders shaped like the real downloads (GLIGEN 1.4
generation and inpainting, SAM ViT-H, PIDray, yolov8s.pt / rtdetr-l.pt) with tiny random
weights; ``snakemake --configfile config/paper.yaml .test/config-paper/config.yaml`` runs
every stage on them: both fine-tune stages, every synthesis method (SAM for the candidates
and for CAR), detectors from the local weights, the three PIDray test levels, the tables
and the report. The checks read what the stages *recorded* (provenance, run records,
fine-tune report), not the config they were given.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image
from ruamel.yaml import YAML
from workspace import copy_repo, git_commit_all, run, snakemake

from xsyn.config import load_config
from xsyn.generator.factory import pretrained_identity
from xsyn.methods import METHODS

pytestmark = pytest.mark.slow

PAPER = ("--configfile", "config/paper.yaml", ".test/config-paper/config.yaml")


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory) -> tuple[Path, dict]:
    ws = copy_repo(tmp_path_factory.mktemp("paper"))
    git_commit_all(ws)
    made = run([sys.executable, "scripts/make_standins.py", "--out", ".test/standins"], ws)
    assert made.returncode == 0, made.stderr[-4000:]
    t0 = time.time()
    out = snakemake(ws, *PAPER)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-8000:]
    report = snakemake(ws, *PAPER, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-4000:]
    print(f"paper DAG on stand-ins: {time.time() - t0:.0f} s")
    cfg = load_config(["paper", ws / ".test/config-paper/config.yaml"])
    return ws, cfg


def synthetic_images(ws: Path, method: str) -> list[dict]:
    coco = json.loads((ws / "data/synthetic/pidray" / method / "annotations.json").read_text())
    assert coco["images"], f"{method}: empty synthetic set"
    return coco["images"]


def test_synthesis_used_the_runs_resolution_steps_and_guidance(paper_run):
    ws, cfg = paper_run
    side = cfg["generator"]["resolution"]
    assert side != load_config()["generator"]["resolution"]  # the overlay's, not the smoke default
    for method in cfg["synthesis"]["methods"]:
        if not METHODS[method].generator:
            continue
        for image in synthetic_images(ws, method):
            used = image["xsyn"]["sampling"]
            assert used["resolution"] == [side, side], method
            assert used["steps"] == cfg["synthesis"]["steps"] and used["guidance_scale"] == 7.5, method
            assert used["scheduler"] == "DDIMScheduler" and used["eta"] == 0.0
            path = ws / "data/synthetic/pidray" / method / "images" / image["file_name"]
            assert Image.open(path).size == (side, side)


def test_car_bom_and_candidates_are_what_the_method_says(paper_run):
    ws, cfg = paper_run
    sam = pretrained_identity({"sam": str(ws / cfg["synthesis"]["car"]["sam_path"])})["sam"][:12]
    candidates = sorted((ws / "data/candidates/pidray").rglob("*.json"))
    assert len(candidates) == cfg["synthesis"]["shards"]  # once per shard, for every method
    found = json.loads(candidates[0].read_text())
    assert (found["source"], found["weights"], found["device"]) == ("sam", sam, "cpu")
    for method in cfg["synthesis"]["methods"]:
        recipe = METHODS[method]
        if not recipe.generator:
            continue
        for image in synthetic_images(ws, method):
            prov = image["xsyn"]
            assert prov["candidates"]["source"] == "sam" and prov["candidates"]["weights"] == sam
            if recipe.car:
                assert prov["car"]["segmenter"] == "sam" and prov["car"]["segmenter_weights"] == sam
                assert (prov["car"]["cue"], prov["car"]["prior"]) == ("attention", 0.0)  # the authors' CAR
            else:
                assert prov["car"] is None, method
            if recipe.bom:
                assert (prov["bom"]["alpha"], prov["bom"]["when"]) == (0.3, "last"), method
            else:
                assert prov["bom"] is None, method
        timing = json.loads((ws / "data/synthetic/pidray" / method / "timing.json").read_text())
        assert timing["shards"][0]["seconds"] > 0 and len(timing["images"]) == len(synthetic_images(ws, method))


def test_both_finetune_stages_ran_from_the_generation_folder(paper_run):
    ws, cfg = paper_run
    gen = ws / "results/models/generator"
    report = json.loads((gen / "finetune.json").read_text())
    assert [(s["name"], s["inpaint"], s["steps"]) for s in report["stages"]] == [
        ("generation", False, 2), ("inpainting", True, 2)]
    assert json.loads((gen / "stages/generation/unet/config.json").read_text())["in_channels"] == 4
    assert json.loads((gen / "unet/config.json").read_text())["in_channels"] == 9  # conv_in widened
    ran = yaml.safe_load((ws / "results/config.yaml").read_text())
    alignment = ran["finetune"]["attention_alignment"]  # our addition: off in the paper profile
    assert alignment["token_weight"] == alignment["pixel_weight"] == alignment["mse_weight"] == 0.0
    assert (ws / "results/grids/generator.png").is_file()


def test_detectors_started_from_the_local_weights_and_scored_every_level(paper_run):
    ws, cfg = paper_run
    runs = sorted((ws / "results/runs/pidray").rglob("run.json"))
    assert len(runs) == 2 * len(cfg["detection"]["sources"])
    families = {}
    for path in runs:
        record = json.loads(path.read_text())
        assert record["init"]["kind"] == "pretrained" and record["init"]["file"].endswith(record["model"])
        families[record["model"]] = record["init"]["family"]
        metrics = json.loads((ws / "results/metrics/pidray" / path.parent.relative_to(
            ws / "results/runs/pidray")).with_suffix(".json").read_text())
        assert list(metrics["splits"]) == ["test_easy", "test_hard", "test_hidden"]
    assert families == {"yolov8s.pt": "yolo", "rtdetr-l.pt": "rtdetr"}
    table = (ws / "results/tables/main.md").read_text()
    assert "yolov8s.pt" in table and "rtdetr-l.pt" in table and "test_hidden" in table
    assert (ws / "results/report.html").stat().st_size > 0


def test_no_network_and_nothing_left_to_do(paper_run):
    ws, _ = paper_run
    log = ws / "network.log"
    assert not log.exists() or log.read_text() == "", log.read_text()
    again = snakemake(ws, "-n", *PAPER)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


def test_standins_have_the_downloads_layout(paper_run):
    """The folders a user downloads, file for file (README, "Paper scale")."""
    ws, _ = paper_run
    standins = ws / ".test/standins"
    for name in ("gligen-1-4-generation-text-box", "gligen-1-4-inpainting-text-box"):
        folder = standins / name
        index = json.loads((folder / "model_index.json").read_text())
        assert index["scheduler"] == ["diffusers", "PNDMScheduler"] and "safety_checker" in index
        for part in ("unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin",
                     "text_encoder/pytorch_model.bin", "tokenizer/vocab.json", "tokenizer/merges.txt",
                     "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json"):
            assert (folder / part).is_file(), f"{name}/{part}"
        unet = json.loads((folder / "unet/config.json").read_text())
        assert unet["attention_type"] == "gated" and unet["in_channels"] == (9 if "inpainting" in name else 4)
    assert (standins / "sam-vit-huge/config.json").is_file()
    assert (standins / "sam-vit-huge/preprocessor_config.json").is_file()
    for level in ("xray_train", "xray_test_easy", "xray_test_hard", "xray_test_hidden"):
        assert (standins / "PIDray/annotations" / f"{level}.json").is_file()
    assert (standins / "yolov8s.pt").is_file() and (standins / "rtdetr-l.pt").is_file()


def test_the_paper_run_is_versioned_under_its_own_config(paper_run):
    """The run commits DVC's lock under the configuration it merged (paper + overlay), not the
    smoke profile's, and names the config files `dvc repro` runs again."""
    ws, cfg = paper_run
    recorded = yaml.safe_load((ws / "config/run.yaml").read_text())
    assert recorded["workflow"]["configfiles"] == list(PAPER[1:])
    # DVC writes its lock as YAML 1.2 (`no` stays a string, 5e-05 is a number)
    lock = YAML(typ="safe", pure=True).load((ws / "dvc.lock").read_text())
    lock = lock["stages"]["workflow"]["params"]["config/run.yaml"]
    for section in ("generator", "finetune", "synthesis", "detection", "device", "report"):
        assert lock[section] == cfg[section], section
    status = run([str(Path(sys.executable).parent / "dvc"), "status"], ws)
    assert status.stdout.strip() == "Data and pipelines are up to date.", status.stdout + status.stderr
