# Tables, plots and picture grids; everything marked report() lands in `snakemake --report`.


rule aggregate:
    input:
        metric_files(),
    output:
        metrics="results/metrics.json",
        table=report("results/tables/main.md", category="Results", labels={"table": "main"}),
        csv="results/tables/main.csv",
        per_class=report("results/tables/per_class.md", category="Results", labels={"table": "per class"}),
        map_plot=report("results/plots/map_vs_share.png", category="Plots", labels={"plot": "mAP vs share"}),
        class_plot=report("results/plots/per_class_ap.png", category="Plots", labels={"plot": "per-class AP"}),
        pr_plot=report("results/plots/pr_curves.png", category="Plots", labels={"plot": "PR curves"}),
    log:
        "results/logs/aggregate.log",
    shell:
        "xsyn aggregate --metrics results/metrics --out results 2> {log}"


rule grid_real:
    input:
        f"data/{DATASET}",
    output:
        report("results/grids/real.png", category="Samples", labels={"source": "real"}),
    params:
        n=config["report"]["grid_images"],
    shell:
        "xsyn show --annotations {input}/annotations/test.json --images {input}/images "
        "--n {params.n} --out {output}"


rule grid_synthetic:
    input:
        f"data/synthetic/{DATASET}/{{method}}",
    output:
        report("results/grids/{method}.png", category="Samples", labels={"source": "{method}"}),
    params:
        n=config["report"]["grid_images"],
    shell:
        "xsyn show --annotations {input}/annotations.json --images {input}/images "
        "--n {params.n} --out {output}"


ruleorder: grid_real > grid_synthetic


rule config_snapshot:
    output:
        report("results/config.yaml", category="Configuration", labels={"file": "config"}),
    params:
        cfg=lambda w: json.dumps(config, sort_keys=True),
    shell:
        "xsyn config --config-json {params.cfg:q} > {output}.tmp && mv {output}.tmp {output}"
