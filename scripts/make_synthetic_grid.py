"""Make docs/synthetic_grid.png: real scans through XsynPipeline (Xsyn-A and Xsyn-M),
requested boxes dashed, CAR-refined boxes solid, class attention maps beside each scan.

usage: python scripts/make_synthetic_grid.py GENERATOR DATASET OUT.png [steps]
e.g.   python scripts/make_synthetic_grid.py results/models/generator data/phantom docs/synthetic_grid.png
"""

import sys

import numpy as np
import torch
from PIL import Image

from xsyn.config import load_config
from xsyn.data.contract import annotations_by_image, category_names, load_split
from xsyn.report.grid import GridItem, draw_grid
from xsyn.synthesis.candidates import CandidateSource
from xsyn.synthesis.layouts import make_layout
from xsyn.synthesis.run import image_seed, load_pipeline

torch.set_num_threads(1)
gen, root, out = sys.argv[1:4]
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 20
cfg = load_config(overrides=["device=cpu"])
syn = cfg["synthesis"]
pipe = load_pipeline(gen, cfg)
coco = load_split(root, "train")
names = category_names(coco)
anns = annotations_by_image(coco)
cands = CandidateSource(coco, syn["car"], "cpu")
size = cfg["generator"]["resolution"]
layouts, images, seeds, kinds = [], [], [], []
for img in sorted(coco["images"], key=lambda i: i["id"]):
    if len(layouts) == 8:
        break
    kind = "xsyn-a" if len(layouts) % 2 == 0 else "xsyn-m"
    arr = np.asarray(Image.open(f"{root}/images/{img['file_name']}").convert("RGB"))
    seed = image_seed(syn["seed"], img["id"])
    lay = make_layout(kind, anns[img["id"]], names, cands(img["id"], arr), (size, size), syn["xsyn_a"], seed)
    if lay is None:
        continue
    layouts.append(lay)
    images.append(arr)
    seeds.append(seed)
    kinds.append(kind)
res = pipe(layouts, images, seeds, num_inference_steps=steps, guidance_scale=syn["guidance_scale"],
           car=syn["car"], bom=syn["bom"], return_maps=True, resolution=size)
items = []
for k, lay in enumerate(layouts):
    kept = [(a["bbox"], names[a["category_id"]]) for a in lay.kept]
    seen = {}
    for c, m in zip(lay.classes, res.maps[k], strict=True):
        seen.setdefault(c, m)
    items.append(GridItem(
        image=res.images[k],
        boxes=kept + list(zip(res.boxes[k], lay.classes, strict=True)),
        dashed=list(zip(res.requested_boxes[k], lay.classes, strict=True)),
        heatmaps=list(seen.items()),
        title=f"{kinds[k]}: {lay.prompt}",
    ))
draw_grid(items, cols=2, cell=256, labels=[names[c] for c in sorted(names)]).save(out)
print("wrote", out, [[(round(r.score, 2), r.fallback) for r in x] for x in res.car])
