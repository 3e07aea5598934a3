"""`voxflow corpus`: import local corpora to manifests, export manifests, download, extract and convert corpora."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from voxflow.errors import VoxflowError


def _import(args) -> None:
    from voxflow.corpora.importers import import_corpus
    from voxflow.data.manifests import write_table

    options = {"sample_rate": args.sample_rate, "on_other_rate": args.on_other_rate,
               "min_duration_s": args.min_duration}
    if args.format == "kaldi":
        options.update(allow_pipes=args.allow_pipes, audio_dir=args.audio_dir, jobs=args.jobs)
    elif args.format == "wespeaker":
        options.update(audio_dir=args.audio_dir)
    elif args.allow_pipes or args.audio_dir:
        raise VoxflowError("--allow-pipes and --audio-dir apply to --format kaldi/wespeaker only")
    if args.speaker_list:
        if args.format != "cnceleb":
            raise VoxflowError("--speaker-list applies to --format cnceleb only")
        options.update(speaker_list=args.speaker_list)
    table = import_corpus(args.source, args.format, corpus=args.corpus or Path(args.source).name, **options)
    write_table(table, args.out, "utterances")
    print(f"{args.source}: {len(table)} utterances, {table.spk_id.nunique()} speakers, "
          f"{table.duration_s.sum() / 3600:.2f} h -> {args.out}")


def _export(args) -> None:
    from voxflow.corpora.kaldi import export_kaldi_dir
    from voxflow.data.manifests import read_table
    from voxflow.corpora.wespeaker_lists import export_wespeaker_list

    table = read_table(args.manifest, "utterances")
    if args.format == "kaldi":
        export_kaldi_dir(table, args.out)
    else:
        export_wespeaker_list(table, args.out, key_suffix=args.key_suffix)
    print(f"{args.manifest}: {len(table)} utterances -> {args.out} ({args.format})")


def _download(args) -> None:
    from voxflow.corpora.catalog import fetch_corpus, resolve

    corpus = resolve(args.name, args.catalog)
    results = fetch_corpus(corpus, args.dest, extract=args.extract, retries=args.retries,
                           progress=not args.no_progress)
    for key, value in results.items():
        if hasattr(value, "refused"):
            state = "already extracted" if value.skipped else f"{value.files} files extracted"
            refused = f", {len(value.refused)} unsafe member(s) refused" if value.refused else ""
            print(f"{corpus.name}: {Path(args.dest) / key}: {state}{refused}")
        else:
            print(f"{corpus.name}: {value}")
    if corpus.import_path:
        print(f"{corpus.name}: import from {Path(args.dest) / corpus.import_path} (format {corpus.import_format})")
    if corpus.notes:
        print(f"{corpus.name}: note: {corpus.notes}")


def _list(args) -> None:
    from voxflow.corpora.catalog import corpus_names, load_catalog, resolve

    catalog = load_catalog(args.catalog)
    for name in corpus_names(catalog):
        c = resolve(name, catalog)
        tofu = sum(1 for f in c.files if f.no_checksum is not None)
        flag = f" [{tofu} file(s) without published checksum: trusted on first use]" if tofu else ""
        print(f"{name}: {c.description} ({len(c.files)} file(s)){flag}")


def _extract(args) -> None:
    from voxflow.corpora.archive import safe_extract

    report = safe_extract(args.archive, args.target, on_refused="error" if args.strict else "skip")
    if report.skipped:
        print(f"{args.target}: already extracted from {args.archive}")
    else:
        print(f"{args.archive}: {report.files} files, {report.dirs} directories, {report.links} links -> {args.target}")
    for member, reason in report.refused:
        print(f"refused {member!r}: {reason}", file=sys.stderr)


def _convert(args) -> None:
    from voxflow.corpora.convert import convert_tree

    report = convert_tree(args.src, args.dst, fmt=args.to, sample_rate=args.sample_rate,
                          src_suffixes=tuple(args.suffix), jobs=args.jobs)
    print(f"{args.src}: {report.converted} converted, {report.skipped} already present -> {args.dst}")


def add_corpus_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``corpus`` command (with its sub-commands) to an argparse sub-parsers object."""
    corpus = subparsers.add_parser("corpus", help="import, export, download, extract or convert corpora",
                                   description=__doc__)
    sub = corpus.add_subparsers(dest="corpus_command", required=True)

    imp = sub.add_parser("import", help="manifest (utterances Parquet) of a local corpus")
    imp.add_argument("source", help="VoxCeleb-layout directory, Kaldi data directory, Wespeaker list, or CN-Celeb "
                                    "data/ or eval/ directory")
    imp.add_argument("--format", required=True, choices=["voxceleb", "kaldi", "wespeaker", "cnceleb"])
    imp.add_argument("--out", required=True, help="utterances Parquet to write")
    imp.add_argument("--corpus", help="value of the corpus column (default: the source's name)")
    imp.add_argument("--sample-rate", type=int, default=16000)
    imp.add_argument("--on-other-rate", choices=["resample", "error"], default="resample")
    imp.add_argument("--min-duration", type=float, default=0.0, help="shorter utterances are an error (seconds)")
    imp.add_argument("--allow-pipes", action="store_true", help="run 'command |' entries of a Kaldi wav.scp")
    imp.add_argument("--audio-dir", help="where piped (Kaldi) or unpacked shard (Wespeaker) audio is written")
    imp.add_argument("--jobs", type=int, default=1, help="pipe commands run at once")
    imp.add_argument("--speaker-list", help="cnceleb: keep only the speakers listed in this file (e.g. dev/dev.lst)")

    exp = sub.add_parser("export", help="write a manifest as a Kaldi directory or a Wespeaker raw list")
    exp.add_argument("manifest", help="utterances Parquet")
    exp.add_argument("--format", required=True, choices=["kaldi", "wespeaker"])
    exp.add_argument("--out", required=True, help="Kaldi directory or Wespeaker list file")
    exp.add_argument("--key-suffix", default="", help="appended to Wespeaker keys (e.g. .wav)")

    dl = sub.add_parser("download", help="download (and extract) a catalogued corpus")
    dl.add_argument("name", help="corpus name (see `voxflow corpus list`)")
    dl.add_argument("--dest", required=True, help="download directory")
    dl.add_argument("--catalog", help="catalogue YAML (default: config/corpora.yaml)")
    dl.add_argument("--no-extract", dest="extract", action="store_false", help="only download and join parts")
    dl.add_argument("--retries", type=int, default=5)
    dl.add_argument("--no-progress", action="store_true")

    ls = sub.add_parser("list", help="list the catalogued corpora")
    ls.add_argument("--catalog", help="catalogue YAML (default: config/corpora.yaml)")

    ex = sub.add_parser("extract", help="safely extract a zip/tar archive into a new directory")
    ex.add_argument("archive")
    ex.add_argument("target")
    ex.add_argument("--strict", action="store_true", help="fail on any unsafe member instead of skipping it")

    cv = sub.add_parser("convert", help="convert an audio tree (e.g. VoxCeleb2 .m4a) to wav or flac with ffmpeg")
    cv.add_argument("src")
    cv.add_argument("dst")
    cv.add_argument("--to", choices=["wav", "flac"], default="wav")
    cv.add_argument("--sample-rate", type=int, default=16000)
    cv.add_argument("--suffix", action="append", default=None, help="source suffix (repeatable; default .m4a)")
    cv.add_argument("--jobs", type=int, default=None)
    return corpus


_COMMANDS = {"import": _import, "export": _export, "download": _download, "list": _list, "extract": _extract,
             "convert": _convert}


def run_corpus_command(args) -> None:
    """Run a parsed ``corpus`` command; user errors are raised as VoxflowError."""
    if getattr(args, "suffix", 0) is None:
        args.suffix = [".m4a"]
    command = _COMMANDS.get(args.corpus_command)
    if command is None:
        raise VoxflowError(f"unknown corpus command {args.corpus_command!r}; known: {sorted(_COMMANDS)}")
    command(args)


def main(argv: list[str] | None = None) -> None:
    """Stand-alone entry point: ``python -m voxflow.corpus_cli import ...``."""
    from voxflow.utils.scripting import run

    ap = argparse.ArgumentParser(prog="voxflow")
    add_corpus_parser(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["corpus", *(sys.argv[1:] if argv is None else argv)])
    run(lambda: run_corpus_command(args))


if __name__ == "__main__":
    main()
