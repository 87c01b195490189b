# Tables, plots and picture grids; everything marked report() lands in `snakemake --report`,
# each with a caption (workflow/report/*.rst) that says what it shows and where it comes from.


rule aggregate:
    input:
        metric_files(),
    output:
        metrics="results/metrics.json",
        headline=directory("results/headline"),  # what `dvc metrics show` prints: AP, ΔAP per arm and share
        table=report("results/tables/main.md", caption="../report/main_table.rst",
                     category="Results", labels={"table": "main"}),
        csv="results/tables/main.csv",
        per_class=report("results/tables/per_class.md", caption="../report/per_class_table.rst",
                         category="Results", labels={"table": "per class"}),
        map_plot=report("results/plots/map_vs_share.png", caption="../report/map_vs_share.rst",
                        category="Plots", labels={"plot": "mAP vs share"}),
        class_plot=report("results/plots/per_class_ap.png", caption="../report/per_class_ap.rst",
                          category="Plots", labels={"plot": "per-class AP"}),
        pr_plot=report("results/plots/pr_curves.png", caption="../report/pr_curves.rst",
                       category="Plots", labels={"plot": "PR curves"}),
    params:
        code=code_for("aggregate"),
    log:
        "results/logs/aggregate.log",
    shell:
        "xsyn aggregate --metrics results/metrics --out results 2> {log}"


rule compare:
    input:
        metrics=metric_files(),
        dataset=f"data/{DATASET}",
    output:
        table=report("results/tables/study.md", caption="../report/study_table.rst",
                     category="Results", labels={"table": "study (paired CIs)"}),
        csv="results/tables/study.csv",
        plot=report("results/plots/study_ap_vs_share.png", caption="../report/study_plot.rst",
                    category="Plots", labels={"plot": "AP vs share (CI bands)"}),
        plot_csv="results/plots/study_ap_vs_share.csv",
        metrics="results/study.json",
    params:
        cfg=cfg_for("compare"),
        code=code_for("compare"),
    log:
        "results/logs/compare.log",
    shell:
        "xsyn compare --metrics {input.metrics} --dataset {input.dataset} --out results "
        "--config-json {params.cfg:q} 2> {log}"


rule grid_real:
    input:
        f"data/{DATASET}",
    output:
        report("results/grids/real.png", caption="../report/grid_real.rst", category="Samples",
               labels={"source": "real"}),
    params:
        n=config["report"]["grid_images"],
        code=code_for("show"),
    log:
        "results/logs/grids/real.log",
    shell:
        "xsyn show --annotations {input}/annotations/test.json --images {input}/images "
        "--n {params.n} --out {output} 2> {log}"


def grid_input(wildcards):
    """The method's synthetic set (per-share sets: the one of its smallest share)."""
    share = min((sh for m, sh in synthetic_sets() if m == wildcards.method), default=None,
                key=lambda sh: -1 if sh is None else sh)
    return synthetic_dir(wildcards.method, share)


rule grid_synthetic:
    input:
        grid_input,
    output:
        report("results/grids/{method}.png", caption="../report/grid_synthetic.rst",
               category="Samples", labels={"source": "{method}"}),
    params:
        n=config["report"]["grid_images"],
        code=code_for("show"),
    log:
        "results/logs/grids/{method}.log",
    shell:
        "xsyn show --annotations {input}/annotations.json --images {input}/images "
        "--n {params.n} --out {output} 2> {log}"


rule config_snapshot:
    output:
        report("results/config.yaml", caption="../report/config.rst", category="Configuration",
               labels={"file": "config"}),
    params:
        cfg=lambda w: json.dumps(config, sort_keys=True),
        code=code_for("config"),
    log:
        "results/logs/config_snapshot.log",
    shell:
        "xsyn config --config-json {params.cfg:q} > {output}.tmp 2> {log} && mv {output}.tmp {output}"
