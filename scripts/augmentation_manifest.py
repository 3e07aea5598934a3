"""Manifest of a noise (MUSAN layout) or room-impulse-response directory (rule augmentation_set)."""
import argparse

from voxflow.corpora.importers import import_augmentation_dir
from voxflow.utils.atomic import atomic_path
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kind", choices=["noise", "rir"], required=True)
    ap.add_argument("--dir", default="", help='directory; "" for an empty set')
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    table = import_augmentation_dir(args.dir, args.kind)
    with atomic_path(args.out) as tmp:
        table.to_parquet(tmp, index=False)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(table.kind.value_counts().items()))
    print(f"{args.kind}: {len(table)} files" + (f" ({kinds})" if kinds else ""))


run(main)
