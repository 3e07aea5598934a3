"""Fetch a corpus of the config's download blocks (rule fetch_corpus) or convert its m4a audio (rule convert_corpus)."""
import argparse
import json

from voxflow.corpora.fetch import convert_download, fetch_download
from voxflow.errors import VoxflowError
from voxflow.utils.atomic import write_text_atomic
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="step", required=True)
    dl = sub.add_parser("download", help="download, verify and extract into --dest")
    dl.add_argument("--corpus", required=True)
    dl.add_argument("--downloads", required=True, help="JSON {corpus: download block}; --corpus's is used")
    dl.add_argument("--retries", type=int, default=5)
    cv = sub.add_parser("convert", help="convert the download's .m4a tree with ffmpeg")
    cv.add_argument("--corpus", required=True)
    cv.add_argument("--convert", required=True, help="JSON {src, dst, format, sample_rate}")
    cv.add_argument("--jobs", type=int, default=None)
    for p in (dl, cv):
        p.add_argument("--dest", required=True, help="the corpus's download directory")
        p.add_argument("--marker", required=True, help="JSON record written (atomically) when done")
    args = ap.parse_args()
    if args.step == "download":
        blocks = json_arg(args.downloads, "--downloads")
        if args.corpus not in blocks:
            raise VoxflowError(f"corpora.{args.corpus}: has no download block")
        record = fetch_download(args.corpus, blocks[args.corpus], args.dest, retries=args.retries, progress=True)
        for name, info in record["files"].items():
            if info["verified"] != "published":
                print(f"{args.corpus}: {name} has no published checksum ({info.get('no_checksum', 'unverified')}); "
                      f"trusted on first use, recorded {info['checksum']} (pin it in the config)")
    else:
        record = convert_download(args.corpus, json_arg(args.convert, "--convert"), args.dest, jobs=args.jobs)
    write_text_atomic(args.marker, json.dumps(record, indent=1))
    print(json.dumps(record, indent=1))


run(main)
