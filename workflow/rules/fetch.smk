# Corpora with a download: block: fetched into {data_dir}/corpora/<corpus>/ (resumable, checksummed downloads,
# safe extraction), then their .m4a audio converted with FFmpeg when the block asks for it.
import re

DOWNLOADS = {c: s["download"] for c, s in config["corpora"].items() if s.get("download")}
# The blocks reach the script through the shell command, not params: URLs and mirrors are no rerun trigger
# (checksums pin the data), so moving to another mirror does not refetch, re-import and retrain.
DOWNLOADS_JSON = as_json(DOWNLOADS)


def fetch_identity(corpus):
    """What the fetched files depend on: the block without mirrors, and without URLs a checksum pins."""
    block = {k: v for k, v in DOWNLOADS[corpus].items() if k not in ("mirrors", "convert")}
    if "files" in block:
        block["files"] = [{k: v for k, v in f.items() if k != "url" or not (f.get("sha256") or f.get("md5"))}
                          for f in block["files"]]
    return as_json(block)


def one_of(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"


rule fetch_corpus:
    output:
        f"{DATA}/corpora/{{corpus}}/.fetched",
    params:
        identity=lambda w: fetch_identity(w.corpus),
        dest=lambda w: f"{DATA}/corpora/{w.corpus}",
    wildcard_constraints:
        corpus=one_of(DOWNLOADS),
    localrule: True  # on the submit host: cluster compute nodes often have no internet access
    log:
        "logs/fetch_corpus/{corpus}.log",
    benchmark:
        "logs/bench/fetch_corpus_{corpus}.tsv"
    shell:
        "python {SCRIPTS}/fetch_corpus.py download --corpus {wildcards.corpus} --downloads {DOWNLOADS_JSON:q}"
        " --dest {params.dest:q} --marker {output} > {log} 2>&1"


rule convert_corpus:
    input:
        f"{DATA}/corpora/{{corpus}}/.fetched",
    output:
        f"{DATA}/corpora/{{corpus}}/.converted",
    params:
        convert=lambda w: as_json(DOWNLOADS[w.corpus]["convert"]),
        dest=lambda w: f"{DATA}/corpora/{w.corpus}",
    threads: 8
    conda:
        "../../envs/ffmpeg.yaml"
    wildcard_constraints:
        corpus=one_of(c for c in DOWNLOADS if DOWNLOADS[c].get("convert")),
    log:
        "logs/convert_corpus/{corpus}.log",
    benchmark:
        "logs/bench/convert_corpus_{corpus}.tsv"
    shell:
        "python {SCRIPTS}/fetch_corpus.py convert --corpus {wildcards.corpus} --convert {params.convert:q}"
        " --dest {params.dest:q} --jobs {threads} --marker {output} > {log} 2>&1"
