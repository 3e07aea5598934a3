# Diarization: VAD (energy, silero, oracle) -> 1.5 s sub-segments -> embeddings -> clustering (spectral, ahc,
# umap_hdbscan) -> RTTM (overlap optional) -> DER; each set may change the diarization section (its diarization:).


rule diarize:
    input:
        model=f"{EXP}/{{exp}}/model.ts",
        audio=lambda w: source_input(config["diarization_sets"][w.dset]["audio_dir"]),
        ref=lambda w: source_input(config["diarization_sets"][w.dset]["rttm_dir"]),
        counts=speaker_count_table,
    output:
        rttm=f"{EXP}/{{exp}}/diarization/{{dset}}/hyp.rttm",
        turns=f"{EXP}/{{exp}}/diarization/{{dset}}/turns.parquet",
    log:
        "logs/diarize/{exp}_{dset}.log",
    benchmark:
        "logs/bench/diarize_{exp}_{dset}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    threads: job_cpus("diarize")
    resources:
        **job_resources("diarize"),
        gpu=int(config["embedding"]["device"].startswith("cuda")),
    params:
        audio_dir=lambda w: config["diarization_sets"][w.dset]["audio_dir"],
        ref_dir=lambda w: config["diarization_sets"][w.dset]["rttm_dir"],
        cfg=lambda w: as_json(diarization_cfg(w.dset)),
        device=config["embedding"]["device"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/diarize.py --model {input.model} --audio-dir {params.audio_dir:q}"
        " --ref-dir={params.ref_dir:q} --config {params.cfg:q} --device {params.device} --set-name {wildcards.dset}"
        " --rttm {output.rttm} --turns {output.turns} > {log} 2>&1"


rule der:
    input:
        hyp=f"{EXP}/{{exp}}/diarization/{{dset}}/hyp.rttm",
        ref=lambda w: source_input(config["diarization_sets"][w.dset]["rttm_dir"]),
        audio=lambda w: source_input(config["diarization_sets"][w.dset]["audio_dir"]),
        uem=lambda w: source_input(config["diarization_sets"][w.dset]["uem_dir"]),
    output:
        f"{EXP}/{{exp}}/diarization/{{dset}}/der.json",
    log:
        "logs/der/{exp}_{dset}.log",
    benchmark:
        "logs/bench/der_{exp}_{dset}.tsv"
    wildcard_constraints:
        exp="|".join(EXPERIMENTS),
    conda:
        "../../envs/voxflow.yaml"
    params:
        ref_dir=lambda w: config["diarization_sets"][w.dset]["rttm_dir"],
        audio_dir=lambda w: config["diarization_sets"][w.dset]["audio_dir"],
        uem=lambda w: config["diarization_sets"][w.dset]["uem_dir"],
        collar=lambda w: diarization_cfg(w.dset)["collar"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/der.py --hyp {input.hyp} --ref-dir {params.ref_dir:q} --audio-dir {params.audio_dir:q}"
        " --uem={params.uem:q} --collar {params.collar}"
        " --out {output} > {log} 2>&1"


rule diarization_plot:
    input:
        hyps=lambda w: [f"{EXP}/{e}/diarization/{w.dset}/hyp.rttm" for e in EXPERIMENTS],
        ref=lambda w: source_input(config["diarization_sets"][w.dset]["rttm_dir"]),
    output:
        report(
            f"{RESULTS}/diarization_{{dset}}.png",
            caption="../report/diarization.rst",
            category="Diarization",
            subcategory="Speaker turns",
            labels={"set": "{dset}"},
        ),
    log:
        "logs/diarization_plot/{dset}.log",
    benchmark:
        "logs/bench/diarization_plot_{dset}.tsv"
    conda:
        "../../envs/scoring.yaml"
    params:
        ref_dir=lambda w: config["diarization_sets"][w.dset]["rttm_dir"],
        names=" ".join(EXPERIMENTS),
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/diarization_plot.py --ref-dir {params.ref_dir:q} --names {params.names}"
        " --hyps {input.hyps} --out {output} > {log} 2>&1"
