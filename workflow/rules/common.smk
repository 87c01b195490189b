# Shared helpers of the rules: config fragments, the experiment matrix, paths, wildcards.
# Names come from the package (one definition each): the synthesis methods and the
# real-only source from xsyn.methods, the share spelling of the paths from xsyn.data.contract,
# what each command reads of the config from xsyn.jobs.

import json
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError

from xsyn.config import load_config
from xsyn.data.contract import share_tag
from xsyn.fingerprint import code_fingerprint
from xsyn.env import gpu_visible
from xsyn.jobs import job_config, launcher, share_config
from xsyn.methods import BUDGET, METHODS, model_runs, parse_sources, synthetic_sources

DATASET = config["dataset"]["name"]
MODELS = model_runs(config["detection"]["models"])  # run name → model file (xsyn.methods)

# Equal information (DESIGN §8). With synthesis.per_share the generator is fine-tuned, and
# every synthetic set made, once per detection share from that share's real subset: the
# paths gain a p{share} level. Without it (smoke) there is one generator
# (finetune.train_split) and one set per method (synthesis.source_split).
PER_SHARE = config["synthesis"]["per_share"]
SHARE_LEVEL = "/p{share}" if PER_SHARE else ""
GENERATOR = "results/models/generator" + SHARE_LEVEL
SYNTHETIC = "data/synthetic/{dataset}" + SHARE_LEVEL  # one folder per method inside
# The information-budget control's labelled set: the generator's own pre-training data,
# remade from the config that made it (its phantom and dataset sections).
BUDGET_CONFIG = config["detection"]["budget"]["config"]
BUDGET_DATASET = "data/budget"


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
# its results were made with: fine-tuning and diffusion sampling one job with up to 8 cores
# (or `torch_threads`, e.g. 1 so that several run side by side), detectors 1 thread (what
# ultralytics gave them before), so that they run side by side.
TORCH_THREADS = config["torch_threads"] or max(1, min(workflow.cores, 8))
DETECTOR_THREADS = 1
# Jobs on a GPU take turns at it (the default profile declares gpu=1); on the CPU they hold
# no gpu and run side by side as far as the cores allow.
GPU_JOB = 1 if gpu_visible(config["device"]) else 0


def cfg_for(command, arm=None, share=None, cfg=None):
    """What `xsyn command` reads of the config for one job (xsyn.jobs), as the JSON of its
    `--config-json`. Passed through `params:`, so Snakemake re-runs a job exactly when a key
    it reads changes; the experiment matrix (methods, models, shares, sources, seeds) is not
    among them: growing it adds jobs and re-runs none. `arm`: the job's synthesis method or
    detector source; `share`: its detection share (with synthesis.per_share the share's
    real subset is the split it reads); `cfg`: another run configuration (the budget data's)."""
    return json.dumps(job_config(config if cfg is None else cfg, command, arm, share=share), sort_keys=True)


def job_share(wildcards):
    """The detection share of a per-share job (its p{share} path level), else None."""
    return float(wildcards.share) if PER_SHARE else None


def arms():
    """The (source, share) cells of the matrix: sources × shares, plus the ablations and
    controls at their own shares."""
    det = config["detection"]
    cells = {(str(s), float(sh)) for s in det["sources"] for sh in det["shares"]}
    cells |= {(str(s), float(sh)) for s in det["ablations"]["sources"] for sh in det["ablations"]["shares"]}
    return sorted(cells)


def synthetic_sets():
    """(method, share) of every synthetic set the workflow makes (share None: one per method):
    synthesis.methods at every detection share, and whatever an arm reads at its share."""
    needed = {(m, float(sh)) for m in config["synthesis"]["methods"] for sh in config["detection"]["shares"]}
    needed |= {(m, share) for source, share in arms() for m in synthetic_sources(source)}
    return sorted(needed) if PER_SHARE else sorted({(m, None) for m, _ in needed})


def code_for(command):
    """A digest of the code `xsyn command` runs (xsyn.fingerprint), passed as a param: editing a
    module re-runs the rules whose command imports it, and what follows them, nothing else."""
    return code_fingerprint(command)


def synthetic_methods():
    return sorted({m for m, _ in synthetic_sets()})


def synthetic_dir(method, share=None, dataset=DATASET):
    """A synthetic set's folder (per-share sets: share = the detection share)."""
    return SYNTHETIC.format(dataset=dataset, share=share_tag(share) if share is not None else "") + f"/{method}"


def uses_budget():
    return any(BUDGET in parse_sources(source) for source, _ in arms())


def metric_files():
    return [
        f"results/metrics/{DATASET}/{model}/{source}/p{share_tag(share)}/s{seed}.json"
        for model in MODELS
        for source, share in arms()
        for seed in config["detection"]["seeds"]
    ]


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
