# Kaseva & Kurimo's validation pairs (their VC_2sec): fixed 2 s segments of held-out speakers, one per session,
# half same-speaker pairs across sessions, half different-speaker pairs; every training stage scores them
# (cosine EER) after each epoch, which picks the best epoch (select: best).


rule validation_pairs:
    input:
        lambda w: f"{DATA}/manifests/{VALIDATION['corpus']}.parquet",
    output:
        segments=f"{DATA}/validation/segments.parquet",
        pairs=f"{DATA}/validation/pairs.parquet",
    log:
        "logs/validation_pairs.log",
    benchmark:
        "logs/bench/validation_pairs.tsv"
    conda:
        "../../envs/voxflow.yaml"
    params:
        pairs=VALIDATION["pairs"],
        segment_s=VALIDATION["segment_s"],
        per_session=VALIDATION["segments_per_session"],
        seed=VALIDATION["seed"],
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/validation_pairs.py --utterances {input} --pairs {params.pairs}"
        " --segment-s {params.segment_s} --segments-per-session {params.per_session} --seed {params.seed}"
        " --segments {output.segments} --pairs-out {output.pairs} > {log} 2>&1"
