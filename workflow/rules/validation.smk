# Kaseva & Kurimo's validation pairs (their VC_2sec): fixed 2 s segments of held-out speakers, one per session,
# half same-speaker pairs across sessions, half different-speaker pairs; every training stage scores them
# (cosine EER) after each epoch, which picks the best epoch (select: best).

VALIDATION = config["validation"]
if VALIDATION["corpus"]:
    _known("validation.corpus", VALIDATION["corpus"], config["corpora"])
    if VALIDATION["corpus"] in config["train_corpora"]:
        raise ValueError(f"config: validation.corpus {VALIDATION['corpus']!r} is a training corpus; "
                         "validate on held-out speakers")


def validation_inputs():
    """The validation set of the training rules ({} without validation)."""
    if not VALIDATION["corpus"]:
        return {}
    return {"val_segments": f"{DATA}/validation/segments.parquet", "val_pairs": f"{DATA}/validation/pairs.parquet"}


rule validation_pairs:
    input:
        lambda w: f"{DATA}/manifests/{VALIDATION['corpus']}.parquet",
    output:
        segments=f"{DATA}/validation/segments.parquet",
        pairs=f"{DATA}/validation/pairs.parquet",
    params:
        pairs=VALIDATION["pairs"],
        segment_s=VALIDATION["segment_s"],
        per_session=VALIDATION["segments_per_session"],
        seed=VALIDATION["seed"],
    log:
        "logs/validation_pairs.log",
    benchmark:
        "logs/bench/validation_pairs.tsv"
    shell:
        "python {SCRIPTS}/validation_pairs.py --utterances {input} --pairs {params.pairs}"
        " --segment-s {params.segment_s} --segments-per-session {params.per_session} --seed {params.seed}"
        " --segments {output.segments} --pairs-out {output.pairs} > {log} 2>&1"
