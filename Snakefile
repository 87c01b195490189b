# xsyn workflow: phantom → prepare → finetune → synthesize → train detectors → evaluate → tables.
#
#   snakemake --cores all                                # smoke profile (default, CPU, minutes)
#   snakemake --cores all --configfile config/paper.yaml # paper profile (GPU, local weights)
#   snakemake --report results/report.html               # one HTML report
#
# Rules are thin: each calls the `xsyn` CLI, passing exactly the config keys its command reads
# for that job (xsyn/jobs.py), so changing one value re-runs only the jobs that read it, and
# growing the matrix (seeds, methods, models, sources, shares) adds jobs and re-runs none.

from snakemake.utils import min_version, update_config, validate

min_version("8.0")

import xsyn.config
import xsyn.env
import xsyn.versioning

xsyn.env.ensure_offline()

# config/smoke.yaml and workflow/schemas/config.schema.yaml link to the package's own copies
# (xsyn/profiles/, xsyn/schemas/): one file each, read by Snakemake and by an installed xsyn.
configfile: "config/smoke.yaml"


# The run DVC versions (xsyn/versioning.py): under `dvc repro` / `dvc exp run`, the config files
# and --config values of the last complete run, read again from their files; otherwise what this
# command line gives. A complete run records it in config/run.yaml (dvc.yaml's params).
if xsyn.versioning.under_dvc():
    RUN = xsyn.versioning.recorded_run()
    for recorded in RUN["configfiles"]:
        workflow.configfile(recorded)
    update_config(config, RUN["config"])
else:
    RUN = {"configfiles": workflow.config_settings.configfiles, "config": workflow.config_settings.config}
    if workflow.is_main_process:  # not in the jobs a cluster runs
        xsyn.versioning.accept_pulled()  # artifacts restored by `dvc pull` are current, not redone
# params.yaml: this workspace's own values over the profile and overlays (`dvc exp run -S
# '++detection.epochs=10'` writes there), so an experiment is a git commit like any other change
update_config(config, xsyn.versioning.overrides())


validate(config, "workflow/schemas/config.schema.yaml")
xsyn.config.validate(config, "workflow config")  # + the method names of xsyn.methods


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/generator.smk"
include: "workflow/rules/synthesis.smk"
include: "workflow/rules/detection.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/tables/main.md",
        "results/tables/study.md",
        "results/metrics.json",
        "results/config.yaml",
        "results/grids/generator.png",
        grids=expand("results/grids/{source}.png", source=grid_sources()),
    default_target: True


onsuccess:
    print_results_table()
    # a complete run (default target): record its config, commit DVC's lock (no second command)
    settings = workflow.dag_settings
    if workflow.is_main_process and not (set(settings.targets) - {"all"} or settings.until or settings.omit_from):
        xsyn.versioning.finish(RUN, config)
