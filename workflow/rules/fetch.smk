# Corpora with a download: block: fetched into {data_dir}/corpora/<corpus>/ (resumable, checksummed downloads,
# safe extraction), then their .m4a audio converted with FFmpeg when the block asks for it.
rule fetch_corpus:
    output:
        f"{DATA}/corpora/{{corpus}}/.fetched",
    log:
        "logs/fetch_corpus/{corpus}.log",
    benchmark:
        "logs/bench/fetch_corpus_{corpus}.tsv"
    wildcard_constraints:
        corpus=one_of(DOWNLOADS),
    localrule: True  # on the submit host: cluster compute nodes often have no internet access
    conda:
        "../../envs/scoring.yaml"
    params:
        identity=lambda w: fetch_identity(w.corpus),
        dest=lambda w: f"{DATA}/corpora/{w.corpus}",
        scripts=untracked(SCRIPTS),
        downloads=untracked(DOWNLOADS_JSON),
    shell:
        "python {params.scripts}/fetch_corpus.py download --corpus {wildcards.corpus} --downloads {params.downloads:q}"
        " --dest {params.dest:q} --marker {output} > {log} 2>&1"


rule convert_corpus:
    input:
        f"{DATA}/corpora/{{corpus}}/.fetched",
    output:
        f"{DATA}/corpora/{{corpus}}/.converted",
    log:
        "logs/convert_corpus/{corpus}.log",
    benchmark:
        "logs/bench/convert_corpus_{corpus}.tsv"
    wildcard_constraints:
        corpus=one_of(c for c in DOWNLOADS if DOWNLOADS[c].get("convert")),
    conda:
        "../../envs/ffmpeg.yaml"
    threads: 8
    params:
        convert=lambda w: as_json(DOWNLOADS[w.corpus]["convert"]),
        dest=lambda w: f"{DATA}/corpora/{w.corpus}",
        scripts=untracked(SCRIPTS),
    shell:
        "python {params.scripts}/fetch_corpus.py convert --corpus {wildcards.corpus} --convert {params.convert:q}"
        " --dest {params.dest:q} --jobs {threads} --marker {output} > {log} 2>&1"
