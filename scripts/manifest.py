"""Import one corpus (its path and any extra_paths) into an utterances manifest (rule manifest)."""
import argparse

from voxflow.corpora.importers import import_corpus, merge_manifests
from voxflow.data.manifests import write_table
from voxflow.errors import VoxflowError
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--source", required=True,
                    help='JSON {"format": "voxceleb|kaldi|wespeaker|cnceleb", "path": ..., "extra_paths": [...], options}')
    ap.add_argument("--audio", default="{}", help="the config's audio section as JSON")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    source, audio = json_arg(args.source, "--source"), json_arg(args.audio, "--audio")
    options = {k: v for k, v in source.items() if k not in ("format", "path", "extra_paths")}
    paths = [source["path"], *source.get("extra_paths", [])]
    if len(set(paths)) != len(paths):
        raise VoxflowError(f"corpora.{args.corpus}.extra_paths: repeats a path of the corpus: {paths}")
    tables = {p: import_corpus(p, fmt=source["format"], corpus=args.corpus, **audio, **options) for p in paths}
    table = merge_manifests(tables) if len(tables) > 1 else tables[paths[0]]
    write_table(table, args.out, "utterances")
    print(f"{args.corpus}: {len(table)} utterances, {table.spk_id.nunique()} speakers, "
          f"{table.duration_s.sum() / 3600:.2f} h")


run(main)
