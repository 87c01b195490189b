"""Stand-ins for the paper profile's downloads: shaped like the real files, tiny, random.

Nobody here can download GLIGEN, SAM or PIDray, yet the paper profile's whole DAG has to
run before anyone spends GPU hours on it. This script writes folders with the file layout
and config keys of the real downloads, with small widths and random weights, so that
``snakemake --configfile config/paper.yaml .test/config-paper/config.yaml`` runs every
stage on a CPU in minutes (README, "Paper scale"):

``gligen-1-4-generation-text-box/``, ``gligen-1-4-inpainting-text-box/``
    the files of the hub repos ``masterful/gligen-1-4-{generation,inpainting}-text-box``
    (main branch): ``model_index.json`` as shipped (a ``StableDiffusionPipeline`` index
    from diffusers 0.2.2: PNDM scheduler, safety checker, feature extractor),
    ``unet/`` (``attention_type: gated``; 4 input channels, 9 for inpainting),
    ``vae/``, ``text_encoder/`` (CLIP text config of ViT-L/14's keys), ``tokenizer/``
    (the real CLIP BPE: ``vocab.json``, ``merges.txt``, ``tokenizer_config.json``,
    ``special_tokens_map.json``), ``scheduler/``, ``safety_checker/``,
    ``feature_extractor/``; weights as pickled ``.bin`` files plus their ``.fp16.bin``
    variants, as those repos hold them (no safetensors on main). SD-1.4 structure
    (4 UNet levels, cross-attention in the first three; VAE ×8), widths cut down.
``sam-vit-huge/``
    a transformers ``SamModel`` + ``SamProcessor`` folder like ``facebook/sam-vit-huge``
    (ViT encoder with windowed and global attention, prompt encoder, mask decoder; the
    processor resizes the longest edge and pads square), a few layers, 256 px instead of
    1024. Random weights segment nothing in particular: on such scans the candidate
    finder falls back on image blobs and says so (``xsyn candidates``).
``PIDray/``
    PIDray's first release layout (``annotations/xray_train.json``,
    ``xray_test_{easy,hard,hidden}.json``; ``train/``, ``easy/``, ``hard/``, ``hidden/``)
    holding phantom scans (``xsyn phantom``) with PIDray's 12 class names, without the
    simulator's benign-region records (a real copy has none: SAM finds the candidates).
``yolov8s.pt``, ``rtdetr-l.pt``
    ultralytics checkpoints (YOLOv8 and RT-DETR architectures, narrow), saved from a model
    yaml; the real files are COCO-pretrained.

Usage::

    python scripts/make_standins.py --out .test/standins
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

GLIGEN_INDEX = {  # masterful/gligen-1-4-*-text-box model_index.json, as shipped
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.2.2",
    "feature_extractor": ["transformers", "CLIPFeatureExtractor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SCHEDULER = {  # SD 1.4's PNDM scheduler config
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.2.2", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
    "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
    "clip_sample": False,
}
FEATURE_EXTRACTOR = {  # CLIP ViT-L/14 preprocessing (the safety checker's input)
    "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224,
}
BOS = {"content": "<|startoftext|>", "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
EOS = {**BOS, "content": "<|endoftext|>"}
TOKENIZER_CONFIG = {
    "add_prefix_space": False, "bos_token": {"__type": "AddedToken", **BOS}, "do_lower_case": True,
    "eos_token": {"__type": "AddedToken", **EOS}, "errors": "replace", "model_max_length": 77,
    "name_or_path": "openai/clip-vit-large-patch14", "pad_token": "<|endoftext|>",
    "special_tokens_map_file": "./special_tokens_map.json", "tokenizer_class": "CLIPTokenizer",
    "unk_token": {"__type": "AddedToken", **EOS},
}
SPECIAL_TOKENS = {"bos_token": BOS, "eos_token": EOS, "pad_token": "<|endoftext|>", "unk_token": EOS}

# Widths cut down (SD 1.4: UNet [320, 640, 1280, 1280] ×2 layers, cross-attention 768;
# VAE [128, 256, 512, 512] ×2; CLIP ViT-L text 768 wide, 12 layers); the structure stays.
UNET_CHANNELS = [32, 32, 64, 64]
VAE_CHANNELS = [32, 32, 64, 64]
TEXT_WIDTH = 32


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_bin(module: torch.nn.Module, folder: Path, name: str) -> None:
    """``name.bin`` (fp32) and ``name.fp16.bin``, pickled state dicts as the hub repos hold them."""
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    torch.save(state, folder / f"{name}.bin")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, folder / f"{name}.fp16.bin")


def diffusers_model(model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    save_bin(model, folder, "diffusion_pytorch_model")


def transformers_model(model, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    save_bin(model, folder, "pytorch_model")


def make_gligen(folder: Path, inpaint: bool, seed: int = 0) -> Path:
    """A ``masterful/gligen-1-4-{generation,inpainting}-text-box`` folder, tiny and random."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel

    from xsyn.generator.factory import CLIP_VOCAB_SIZE, write_clip_vocab

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=9 if inpaint else 4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=tuple(UNET_CHANNELS), layers_per_block=1, attention_head_dim=8,
        cross_attention_dim=TEXT_WIDTH, attention_type="gated",
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=tuple(VAE_CHANNELS), scaling_factor=0.18215,
    )
    text_config = dict(
        vocab_size=CLIP_VOCAB_SIZE, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
        projection_dim=TEXT_WIDTH, bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    safety = StableDiffusionSafetyChecker(CLIPConfig(
        text_config=text_config, projection_dim=TEXT_WIDTH,
        vision_config=dict(hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=1,
                           num_attention_heads=2, image_size=224, patch_size=32, projection_dim=TEXT_WIDTH),
    ))
    if folder.exists():
        shutil.rmtree(folder)
    write_json(folder / "model_index.json", GLIGEN_INDEX)
    diffusers_model(unet, folder / "unet")
    diffusers_model(vae, folder / "vae")
    transformers_model(text_encoder, folder / "text_encoder")
    transformers_model(safety, folder / "safety_checker")
    write_json(folder / "scheduler" / "scheduler_config.json", SCHEDULER)
    write_json(folder / "feature_extractor" / "preprocessor_config.json", FEATURE_EXTRACTOR)
    (folder / "tokenizer").mkdir()
    write_clip_vocab(folder / "tokenizer")
    write_json(folder / "tokenizer" / "tokenizer_config.json", TOKENIZER_CONFIG)
    write_json(folder / "tokenizer" / "special_tokens_map.json", SPECIAL_TOKENS)
    return folder


def make_sam(folder: Path, seed: int = 0) -> Path:
    """A ``facebook/sam-vit-huge``-shaped transformers folder (``SamModel`` + ``SamProcessor``)."""
    from transformers import (
        SamConfig,
        SamImageProcessor,
        SamMaskDecoderConfig,
        SamModel,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(seed)
    width, side = 32, 256  # sam-vit-huge: 1280-wide ViT, 32 layers, 1024-px input
    config = SamConfig(
        vision_config=SamVisionConfig(hidden_size=width, output_channels=width, num_hidden_layers=2,
                                      num_attention_heads=2, mlp_dim=2 * width, global_attn_indexes=[1],
                                      window_size=14, image_size=side, patch_size=16, num_pos_feats=width // 2),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=width, image_size=side, patch_size=16),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=width, mlp_dim=2 * width, num_attention_heads=2,
                                                 iou_head_hidden_dim=width),
    )
    if folder.exists():
        shutil.rmtree(folder)
    model = SamModel(config).eval()
    model.save_pretrained(folder)
    # the processor of sam-vit-huge (longest edge resized, then padded square) at the stand-in's side
    # (preprocessor_config.json, the file the hub repo has)
    SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side}).save_pretrained(folder)
    return folder


PIDRAY_SPLITS = (("train", "xray_train", "train"), ("test_easy", "xray_test_easy", "easy"),
                 ("test_hard", "xray_test_hard", "hard"), ("test_hidden", "xray_test_hidden", "hidden"))


def make_pidray(folder: Path, n_train: int = 40, n_test: int = 6, image_size: int = 96, seed: int = 0) -> Path:
    """PIDray's first release layout, holding phantom scans with PIDray's class names."""
    import tempfile

    from xsyn.config import load_config
    from xsyn.data.phantom import CLASSES, generate, params_from_config

    section = {**load_config()["phantom"], "class_balance": "pidray"}
    params = params_from_config(section, image_size=image_size)
    with tempfile.TemporaryDirectory() as tmp:
        coco = generate(Path(tmp) / "raw", params, n_train + 3 * n_test, seed, workers=1, progress=False)
        if folder.exists():
            shutil.rmtree(folder)
        categories = [{"id": i, "name": name, "supercategory": "item"} for i, name in enumerate(CLASSES, 1)]
        by_name = {c["name"]: c["id"] for c in coco["categories"]}
        ours = {by_name[name]: i for i, name in enumerate(CLASSES, 1)}
        images = sorted(coco["images"], key=lambda im: im["id"])
        cuts = [0, n_train, n_train + n_test, n_train + 2 * n_test, n_train + 3 * n_test]
        for (_, json_name, sub), lo, hi in zip(PIDRAY_SPLITS, cuts, cuts[1:], strict=False):
            part, anns = [], []
            for k, img in enumerate(images[lo:hi], 1):  # each file numbers its images from 1, as PIDray's do
                name = f"xray_{sub}{k:05d}.png"
                (folder / sub).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / "raw" / "images" / img["file_name"], folder / sub / name)
                part.append({"id": k, "file_name": name, "width": img["width"], "height": img["height"]})
                for a in coco["annotations"]:
                    if a["image_id"] == img["id"]:
                        anns.append({"id": len(anns) + 1, "image_id": k, "category_id": ours[a["category_id"]],
                                     "bbox": a["bbox"], "area": a["area"], "iscrowd": 0,
                                     "segmentation": a.get("segmentation", [])})
            write_json(folder / "annotations" / f"{json_name}.json",
                       {"images": part, "annotations": anns, "categories": categories})
    return folder


# Narrow versions of ultralytics' yolov8.yaml (scale s) and rtdetr-l.yaml: same modules and
# wiring, a fraction of the channels, so the stand-in trains on a CPU in seconds.
YOLO_YAML = """\
nc: 80
scales:
  s: [0.33, 0.0625, 64]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]]
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]]
  - [-1, 3, C2f, [256]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 3, C2f, [512]]
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]]
  - [-1, 3, C2f, [1024]]
  - [[15, 18, 21], 1, Detect, [nc]]
"""
RTDETR_YAML = """\
nc: 80
scales:
  l: [1.00, 1.00, 1024]
backbone:
  - [-1, 1, HGStem, [8, 16]]
  - [-1, 1, HGBlock, [8, 16, 3]]
  - [-1, 1, DWConv, [16, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [16, 32, 3]]
  - [-1, 1, DWConv, [32, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [16, 32, 5, True, False]]
  - [-1, 1, HGBlock, [16, 32, 5, True, True]]
  - [-1, 1, HGBlock, [16, 32, 5, True, True]]
  - [-1, 1, DWConv, [32, 3, 2, 1, False]]
  - [-1, 1, HGBlock, [32, 64, 5, True, False]]
head:
  - [-1, 1, Conv, [16, 1, 1, None, 1, 1, False]]
  - [-1, 1, AIFI, [32, 2]]
  - [-1, 1, Conv, [16, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [7, 1, Conv, [16, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [16]]
  - [-1, 1, Conv, [16, 1, 1]]
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [3, 1, Conv, [16, 1, 1, None, 1, 1, False]]
  - [[-2, -1], 1, Concat, [1]]
  - [-1, 1, RepC3, [16]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [[-1, 17], 1, Concat, [1]]
  - [-1, 1, RepC3, [16]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [[-1, 12], 1, Concat, [1]]
  - [-1, 1, RepC3, [16]]
  - [[21, 24, 27], 1, RTDETRDecoder, [nc, 16, 20, 4, 2, 1, 32]]
"""


def make_detectors(folder: Path) -> list[Path]:
    """``yolov8s.pt`` and ``rtdetr-l.pt``: ultralytics checkpoints saved from (narrow) yamls."""
    import tempfile

    from xsyn.env import prepare_ultralytics

    prepare_ultralytics()
    from ultralytics import RTDETR, YOLO

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for cls, yaml_text, yaml_name, pt in ((YOLO, YOLO_YAML, "yolov8s.yaml", "yolov8s.pt"),
                                              (RTDETR, RTDETR_YAML, "rtdetr-l.yaml", "rtdetr-l.pt")):
            (Path(tmp) / yaml_name).write_text(yaml_text)
            torch.manual_seed(0)
            cls(str(Path(tmp) / yaml_name)).save(str(folder / pt))
            out.append(folder / pt)
    return out


def make_all(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "gligen-generation": make_gligen(out / "gligen-1-4-generation-text-box", inpaint=False),
        "gligen-inpainting": make_gligen(out / "gligen-1-4-inpainting-text-box", inpaint=True, seed=1),
        "sam": make_sam(out / "sam-vit-huge"),
        "pidray": make_pidray(out / "PIDray"),
    }
    made.update(dict(zip(("yolov8s", "rtdetr-l"), make_detectors(out), strict=True)))
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".test/standins"), help="folder to write (default: %(default)s)")
    args = parser.parse_args(argv)
    for name, path in make_all(args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import xsyn  # noqa: F401  (offline environment, thread policy)

    sys.exit(main())
