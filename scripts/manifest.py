"""Import one corpus into an utterances manifest (rule manifest)."""
import argparse

from voxflow.data.importers import import_corpus
from voxflow.data.manifests import write_table
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--source", required=True, help='JSON {"format": "voxceleb|kaldi|wespeaker", "path": ..., options}')
    ap.add_argument("--audio", default="{}", help="the config's audio section as JSON")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    source, audio = json_arg(args.source, "--source"), json_arg(args.audio, "--audio")
    options = {k: v for k, v in source.items() if k not in ("format", "path")}
    table = import_corpus(source["path"], fmt=source["format"], corpus=args.corpus, **audio, **options)
    write_table(table, args.out, "utterances")
    print(f"{args.corpus}: {len(table)} utterances, {table.spk_id.nunique()} speakers, "
          f"{table.duration_s.sum() / 3600:.2f} h")


run(main)
