"""Throughput with one core held by another process, as a ratio to the idle machine (issue 20).

Laptops and shared servers always have something else running. This measures, in one run,
how much of its idle speed a torch job keeps when a busy-loop process holds one core, for
the three kinds of torch job of the workflow, under the thread policy of ``main`` before
issue 20 (``old``) and the current one (``new``, :mod:`xsyn.env`):

- ``finetune``: training steps of the tiny generator (``finetune_speed.py``, inpainting);
- ``synthesis``: ``XsynPipeline`` images/s, CAR + BOM on (the tiny smoke generator's shapes);
- ``detector``: ultralytics YOLOv8n training images/s on tiny rectangle scans.

Policies. ``old``: every torch rule reserved ``min(cores, 8)`` threads (``OMP_NUM_THREADS``),
OpenMP's default wait policy (spin, then sleep), and ultralytics reset the detector to
``min(8, cores - 1)`` threads. ``new``: the rules' ``threads:`` (detectors 1; fine-tune and
synthesis ``min(cores, 8)``, whose numbers depend on the thread count), passive OpenMP
waits, and the detector keeps the job's threads.

Each measurement runs in a fresh process (thread settings are read when torch loads), after
a warm-up, for a few seconds. A second table ("side by side") compares two jobs run at the
same time with one thread each against the same two one after another with the job's
threads (what Snakemake does when ``threads:`` equals the cores); the ratio is the throughput
of the pair. Exit status 1 when, under the new policy, fine-tune or detector throughput with
one core busy is below ``--bar`` × idle (issue 20: 0.55).

    python benchmarks/contention.py                      # everything, a few minutes on 2 cores
    python benchmarks/contention.py --only finetune detector --no-side-by-side
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# No xsyn or torch import up here: the worker of the old policy must load torch (and OpenMP)
# before xsyn sets the passive wait policy.

HERE = Path(__file__).resolve().parent
WORKLOADS = ("finetune", "synthesis", "detector")
UNITS = {"finetune": "it/s", "synthesis": "img/s", "detector": "img/s"}
BUSY_LOOP = "while True:\n    pass\n"


# --------------------------------------------------------------------------- policies


def cores() -> int:
    """Cores this process may run on (as :func:`xsyn.env.available_cores`)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def policy_threads(policy: str, workload: str, n_cores: int) -> int:
    """Threads the workflow gives this job (``OMP_NUM_THREADS``) under ``policy``."""
    torch_threads = max(1, min(n_cores, 8))
    if policy == "new" and workload == "detector":
        return 1
    return torch_threads


def worker_env(threads: int) -> dict[str, str]:
    """The caller's environment without its OpenMP settings, and the job's thread count. The
    policies differ in what the worker imports first (see :func:`worker_main`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env.update({"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"})
    return env


# --------------------------------------------------------------------------- workers
# Each worker prints one JSON line: {"throughput": ..., "threads": torch threads while measured}.


def wait_for_go(barrier: str | None, name: str) -> None:
    """Two workers started together begin measuring together (setup times differ)."""
    if not barrier:
        return
    Path(barrier, f"ready-{name}").touch()
    while not Path(barrier, "go").exists():
        time.sleep(0.02)


def work_finetune(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(HERE))
    from finetune_speed import bench

    wait_for_go(args.barrier, args.name)
    row = bench("tiny", 64, 8, "no", args.steps or 10, inpaint=True)
    return {"throughput": row["it_per_s"], "threads": row["threads"]}


def work_synthesis(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from synthesis_speed import prepared_pipeline

    from xsyn.config import load_config
    from xsyn.generator.factory import build_tiny_components

    cfg = load_config()
    size = cfg["generator"]["resolution"]
    comp = build_tiny_components(cfg["generator"]["tiny"], size, inpaint=True)
    pipe, layouts, images, seeds = prepared_pipeline(comp, "cpu", torch.float32, 2, size)
    syn = cfg["synthesis"]
    kw = {"num_inference_steps": args.steps or 8, "guidance_scale": syn["guidance_scale"],
          "resolution": size, "car": {**syn["car"], "enabled": True},
          "bom": {**syn["bom"], "enabled": True}}
    pipe(layouts, images, seeds, **{**kw, "num_inference_steps": 2})  # warm-up
    wait_for_go(args.barrier, args.name)
    t = time.perf_counter()
    for _ in range(args.repeats):
        pipe(layouts, images, seeds, **kw)
    elapsed = time.perf_counter() - t
    return {"throughput": args.repeats * len(layouts) / elapsed, "threads": torch.get_num_threads()}


def write_rect_dataset(root: Path, n_train: int = 32, size: int = 128) -> Path:
    """YOLO-format scans with coloured rectangles (speed only); returns the data yaml."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", 4)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.full((size, size, 3), 200, np.uint8)
            lines = []
            for _ in range(2):
                cls = int(rng.integers(2))
                w, h = (int(v) for v in rng.integers(size // 8, size // 3, 2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                img[y:y + h, x:x + w] = (30, 60, 220) if cls else (230, 140, 20)
                lines.append(f"{cls} {(x + w / 2) / size} {(y + h / 2) / size} {w / size} {h / size}")
            Image.fromarray(img).save(root / split / "images" / f"{i:03d}.png")
            (root / split / "labels" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: train/images\nval: val/images\nnames: {{0: Gun, 1: Knife}}\n")
    return data


def work_detector(args: argparse.Namespace) -> dict:
    import torch

    if args.policy == "new":
        from xsyn.detection.train import build_model

        model = build_model("yolov8n.yaml")
    else:  # main before issue 20: ultralytics as it comes
        from xsyn.env import prepare_ultralytics

        prepare_ultralytics()
        from ultralytics import YOLO

        model = YOLO("yolov8n.yaml")
    stamps: list[float] = []
    threads: list[int] = []

    def on_batch_end(_trainer) -> None:
        stamps.append(time.perf_counter())
        threads.append(torch.get_num_threads())

    def on_train_start(_trainer) -> None:
        wait_for_go(args.barrier, args.name)

    model.add_callback("on_train_start", on_train_start)
    model.add_callback("on_train_batch_end", on_batch_end)
    batch = 8
    model.train(data=args.data, epochs=args.steps or 2, imgsz=128, batch=batch, workers=0, device="cpu",
                seed=0, deterministic=True, amp=False, val=False, plots=False, verbose=False,
                project=str(Path(args.data).parent / "runs"), name=f"{args.name}-{os.getpid()}",
                exist_ok=True, optimizer="AdamW", lr0=0.003, nbs=8)
    warm = 2
    timed = stamps[warm:]
    return {"throughput": (len(timed) - 1) * batch / (timed[-1] - timed[0]), "threads": threads[-1]}


def worker_main(args: argparse.Namespace) -> None:
    if args.policy == "old":
        waits = os.environ.get("OMP_WAIT_POLICY", "default")
        import torch  # noqa: F401  (loads OpenMP before xsyn can set the passive wait policy)
    import xsyn  # noqa: F401  (new: thread policy + offline environment before torch)

    if args.policy == "new":
        waits = os.environ.get("OMP_WAIT_POLICY", "default")
    result = {"finetune": work_finetune, "synthesis": work_synthesis, "detector": work_detector}[
        args.worker](args)
    print(json.dumps({**result, "waits": waits}))  # waits: OpenMP's wait policy when torch loaded


# --------------------------------------------------------------------------- parent


@contextlib.contextmanager
def busy_core() -> Iterator[None]:
    """A process that holds one core for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def worker_cmd(workload: str, policy: str, opts: argparse.Namespace, name: str = "a",
               barrier: str | None = None) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", workload, "--policy", policy,
           "--name", name, "--data", opts.data, "--repeats", str(opts.repeats)]
    if opts.steps.get(workload):
        cmd += ["--steps", str(opts.steps[workload])]
    if barrier:
        cmd += ["--barrier", barrier]
    return cmd


def parse_result(out: str, err: str, cmd: list[str]) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"worker failed: {' '.join(cmd)}\n{err[-3000:]}")
    return json.loads(lines[-1])


def run_one(workload: str, policy: str, threads: int, opts: argparse.Namespace) -> dict:
    """One measurement in a fresh process; NaN when it ran past ``--timeout``."""
    cmd = worker_cmd(workload, policy, opts)
    try:
        proc = subprocess.run(cmd, env=worker_env(threads), capture_output=True, text=True,
                              timeout=opts.timeout)
    except subprocess.TimeoutExpired:
        print(f"  {workload} {policy}: no result within {opts.timeout:.0f} s", flush=True)
        return {"throughput": float("nan"), "threads": threads, "waits": "?"}
    return parse_result(proc.stdout, proc.stderr, cmd)


def run_pair(workload: str, policy: str, threads: int, opts: argparse.Namespace) -> list[dict]:
    """Two copies started together; they begin measuring at the same moment."""
    with tempfile.TemporaryDirectory() as barrier:
        cmds = [worker_cmd(workload, policy, opts, name, barrier) for name in ("a", "b")]
        procs = [subprocess.Popen(c, env=worker_env(threads), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in cmds]
        try:
            deadline = time.monotonic() + opts.timeout
            while not all(Path(barrier, f"ready-{n}").exists() for n in ("a", "b")):
                if any(p.poll() not in (None, 0) for p in procs) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            Path(barrier, "go").touch()
            results = []
            for p, c in zip(procs, cmds, strict=True):
                out, err = p.communicate(timeout=opts.timeout)
                results.append(parse_result(out, err, c))
        finally:
            for p in procs:
                p.kill()
                p.wait()
    return results


def contention_table(opts: argparse.Namespace) -> tuple[list[dict], bool]:
    n = cores()
    rows, ok = [], True
    for workload in opts.only:
        for policy in ("old", "new"):
            threads = policy_threads(policy, workload, n)
            idle = run_one(workload, policy, threads, opts)
            with busy_core():
                busy = run_one(workload, policy, threads, opts)
            ratio = busy["throughput"] / idle["throughput"]
            rows.append({"workload": workload, "policy": policy, "omp_threads": threads,
                         "torch_threads": busy["threads"], "waits": busy.get("waits", "?"),
                         "idle": idle["throughput"],
                         "busy": busy["throughput"], "ratio": ratio})
            if policy == "new" and workload in ("finetune", "detector") and not ratio >= opts.bar:
                ok = False
            print(f"  {workload:9} {policy:3}  threads {threads}  idle {idle['throughput']:7.3f}  "
                  f"busy {busy['throughput']:7.3f} {UNITS[workload]}  ratio {ratio:.2f}", flush=True)
    return rows, ok


def side_by_side_table(opts: argparse.Namespace) -> list[dict]:
    n = cores()
    rows = []
    for workload in [w for w in opts.only if w in ("detector", "synthesis")]:
        threads = policy_threads("old", workload, n)  # one job with all the cores
        serial = run_one(workload, "new", threads, opts)["throughput"]
        one = run_one(workload, "new", 1, opts)["throughput"]
        pair = sum(r["throughput"] for r in run_pair(workload, "new", 1, opts))
        rows.append({"workload": workload, "serial_threads": threads, "serial": serial,
                     "serial_1_thread": one, "side_by_side_1_thread": pair,
                     "ratio_vs_serial": pair / serial, "ratio_vs_serial_1_thread": pair / one})
        print(f"  {workload:9} one job × {threads} threads {serial:7.3f}  one job × 1 thread {one:7.3f}  "
              f"two side by side × 1 thread {pair:7.3f} {UNITS[workload]}", flush=True)
    return rows


def print_tables(rows: list[dict], pairs: list[dict], bar: float, label: str) -> None:
    print(f"\nOne core held by a busy loop, {cores()} cores ({label}); ratio = busy / idle, same run")
    print("| job | policy | OMP threads | torch threads | OpenMP waits | idle | one core busy | ratio |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    for r in rows:
        unit = UNITS[r["workload"]]
        print(f"| {r['workload']} | {r['policy']} | {r['omp_threads']} | {r['torch_threads']} | {r['waits']} | "
              f"{r['idle']:.3f} {unit} | {r['busy']:.3f} {unit} | {r['ratio']:.2f} |")
    print(f"bar: new policy, fine-tune and detector ratio ≥ {bar}")
    if pairs:
        print("\nSide by side (no busy loop): throughput of two jobs at once, 1 thread each, vs one job at a time")
        print("| job | one job × N threads | one job × 1 thread | two side by side × 1 thread | "
              "pair / (one × N) | pair / (one × 1) |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in pairs:
            unit = UNITS[r["workload"]]
            print(f"| {r['workload']} | {r['serial']:.3f} {unit} (N={r['serial_threads']}) | "
                  f"{r['serial_1_thread']:.3f} | {r['side_by_side_1_thread']:.3f} | "
                  f"{r['ratio_vs_serial']:.2f} | {r['ratio_vs_serial_1_thread']:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--no-side-by-side", action="store_true", help="skip the side-by-side table")
    p.add_argument("--bar", type=float, default=0.55, help="least busy/idle ratio (new policy)")
    p.add_argument("--repeats", type=int, default=2, help="synthesis calls per measurement")
    p.add_argument("--finetune-steps", type=int, default=10)
    p.add_argument("--synthesis-steps", type=int, default=8, help="denoising steps per call")
    p.add_argument("--detector-epochs", type=int, default=2, help="on 32 scans, batch 8")
    p.add_argument("--timeout", type=float, default=300, help="seconds per measurement")
    p.add_argument("--label", default="measured under contention unless the machine was idle",
                   help="what else ran on the machine (printed with the table)")
    p.add_argument("--json", default=None, help="also write the rows here")
    # worker side (internal)
    p.add_argument("--worker", choices=WORKLOADS, help=argparse.SUPPRESS)
    p.add_argument("--policy", choices=["old", "new"], default="new", help=argparse.SUPPRESS)
    p.add_argument("--name", default="a", help=argparse.SUPPRESS)
    p.add_argument("--barrier", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker_main(args)
        return 0

    # a terminated run still stops its workers and the busy loop (finally blocks run on exit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.steps = {"finetune": args.finetune_steps, "synthesis": args.synthesis_steps,
                  "detector": args.detector_epochs}
    with tempfile.TemporaryDirectory(prefix="xsyn-contention-") as tmp:
        args.data = str(write_rect_dataset(Path(tmp) / "rects"))
        os.environ["XSYN_CACHE"] = str(Path(tmp) / "cache")
        print(f"contention: {cores()} cores; one core busy vs idle", flush=True)
        rows, ok = contention_table(args)
        pairs = [] if args.no_side_by_side else side_by_side_table(args)
    print_tables(rows, pairs, args.bar, args.label)
    if args.json:
        Path(args.json).write_text(json.dumps({"contention": rows, "side_by_side": pairs}, indent=1))
    print("checks:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
