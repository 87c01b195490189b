"""CAR + BOM overhead: sampling time with both on / with both off (same model, same inputs).

The issue's bar is ≤ 1.10. One run prints both times and the ratio (best of ``--repeats``
after a warm-up, the two variants interleaved so machine load hits them alike); exit
status 1 when the ratio is above ``--max-ratio``.

    python benchmarks/synthesis_overhead.py                 # tiny smoke generator, 20 steps
    python benchmarks/synthesis_overhead.py --model sd14 --resolution 512 --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthesis_speed import make_clock, prepared_pipeline, sd14_components  # noqa: E402

from xsyn.config import load_config, resolve_device  # noqa: E402
from xsyn.generator.factory import build_tiny_components  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["tiny", "sd14"], default="tiny")
    p.add_argument("--device", default="auto")
    p.add_argument("--resolution", type=int, default=None, help="default: generator.resolution (tiny), 512 (sd14)")
    p.add_argument("--steps", type=int, default=None, help="default: synthesis.steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-ratio", type=float, default=1.10)
    args = p.parse_args(argv)
    cfg = load_config()
    syn = cfg["synthesis"]
    device = resolve_device(args.device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    if args.model == "tiny":
        size = args.resolution or cfg["generator"]["resolution"]
        comp = build_tiny_components(cfg["generator"]["tiny"], size, inpaint=True)
    else:
        size = args.resolution or 512
        comp = sd14_components(size)
    pipe, layouts, images, seeds = prepared_pipeline(comp, device, dtype, args.batch, size)
    side = size // pipe.vae_scale_factor
    car = {**syn["car"], "enabled": True, "resolutions": [min(16, side)]}
    bom = {**syn["bom"], "enabled": True}
    kw = {"num_inference_steps": args.steps or syn["steps"], "guidance_scale": syn["guidance_scale"],
          "resolution": size}
    runs = {"on": lambda: pipe(layouts, images, seeds, car=car, bom=bom, **kw),
            "off": lambda: pipe(layouts, images, seeds, **kw)}
    clock = make_clock(device)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for fn in runs.values():
        fn()  # warm-up
    for _ in range(args.repeats):
        for key, fn in runs.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = clock()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[key].append(clock() - t)
    on, off = min(times["on"]), min(times["off"])
    ratio = on / off
    what = "wall" if device.startswith("cuda") else "process CPU"
    print(f"model {args.model}, {device} ({what} time), {size} px, {kw['num_inference_steps']} steps, batch {args.batch}")
    print(f"CAR+BOM on : {on:.3f} s ({args.batch / on:.3f} img/s)")
    print(f"CAR+BOM off: {off:.3f} s ({args.batch / off:.3f} img/s)")
    print(f"ratio on/off: {ratio:.3f}  ({'PASS' if ratio <= args.max_ratio else 'FAIL'}, bar {args.max_ratio})")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
