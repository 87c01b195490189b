# Shared helpers of the rules: config fragments, the experiment matrix, paths, wildcards.
# Names come from the package (one definition each): the synthesis methods and the
# real-only source from xsyn.methods, the share spelling of the paths from xsyn.data.contract,
# what each command reads of the config from xsyn.jobs.

import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from xsyn.data.contract import share_tag
from xsyn.fingerprint import code_fingerprint
from xsyn.env import gpu_visible
from xsyn.jobs import job_config, launcher
from xsyn.methods import METHODS, model_runs, parse_sources

DATASET = config["dataset"]["name"]
MODELS = model_runs(config["detection"]["models"])  # run name → model file (xsyn.methods)


wildcard_constraints:
    dataset=r"[^/]+",
    method="|".join(re.escape(m) for m in METHODS),
    model="|".join(re.escape(m) for m in MODELS),
    split=r"[^/]+",
    source=r"[^/]+",
    share=r"\d+(\.\d+)?",
    seed=r"\d+",
    index=r"\d+",
    nshards=r"\d+",

# Threads (README, "Threads"): Snakemake exports OMP_NUM_THREADS = a job's threads: and xsyn
# holds torch to it. Torch's numbers depend on the thread count, so each rule keeps the count
# its results were made with: fine-tuning and diffusion sampling one job with up to 8 cores,
# detectors 1 thread (what ultralytics gave them before), so that they run side by side.
TORCH_THREADS = max(1, min(workflow.cores, 8))
DETECTOR_THREADS = 1
# Jobs on a GPU take turns at it (the default profile declares gpu=1); on the CPU they hold
# no gpu and run side by side as far as the cores allow.
GPU_JOB = 1 if gpu_visible(config["device"]) else 0


def cfg_for(command, method=None):
    """What `xsyn command` reads of the config for one job (xsyn.jobs), as the JSON of its
    `--config-json`. Passed through `params:`, so Snakemake re-runs a job exactly when a key
    it reads changes; the experiment matrix (methods, models, shares, sources, seeds) is not
    among them: growing it adds jobs and re-runs none."""
    return json.dumps(job_config(config, command, method), sort_keys=True)


def code_for(command):
    """A digest of the code `xsyn command` runs (xsyn.fingerprint), passed as a param: editing a
    module re-runs the rules whose command imports it, and what follows them, nothing else."""
    return code_fingerprint(command)


def detection_sources():
    return [str(s) for s in config["detection"]["sources"]]


def synthetic_methods():
    """Synthetic sets the matrix needs: the configured methods plus any used by a source."""
    needed = set(config["synthesis"]["methods"])
    for source in detection_sources():
        needed.update(parse_sources(source))
    return sorted(needed)


def metric_files():
    return expand(
        "results/metrics/{dataset}/{model}/{source}/p{share}/s{seed}.json",
        dataset=DATASET,
        model=list(MODELS),
        source=detection_sources(),
        share=[share_tag(s) for s in config["detection"]["shares"]],
        seed=config["detection"]["seeds"],
    )


def grid_sources():
    return ["real"] + synthetic_methods()


def print_results_table():
    table = Path("results/tables/main.md")
    if table.exists():
        print("\n" + table.read_text())
        print("Full report: snakemake --report results/report.html (`make run` builds it).")


def pretrained_files():
    """Files of the local pretrained folders the generator starts from (the shipped tiny
    model by default): inputs of `finetune`, so new weights re-run it. A configured folder
    that does not exist stays as itself, and Snakemake names it as a missing input."""
    gen = config["generator"]
    if gen["kind"] != "pretrained":
        return []
    files = []
    for folder in gen["pretrained"].values():
        if not folder:
            continue
        found = sorted(str(p) for p in Path(folder).rglob("*") if p.is_file()) if Path(folder).is_dir() else []
        files.extend(found or [str(folder)])
    return files
