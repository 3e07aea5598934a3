"""Build the validation pair set (Kaseva & Kurimo's VC_2sec) from a held-out corpus (rule validation_pairs)."""
import argparse

from voxflow.data.manifests import read_table, write_table
from voxflow.train.validation import build_validation_set
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utterances", required=True, help="manifest of the held-out corpus")
    ap.add_argument("--pairs", type=int, default=2000, help="number of pairs (half target, half non-target)")
    ap.add_argument("--segment-s", type=float, default=2.0)
    ap.add_argument("--segments-per-session", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--segments", required=True, help="output: the segments table")
    ap.add_argument("--pairs-out", required=True, help="output: the pairs table (enroll_id, test_id, label)")
    args = ap.parse_args()
    utts = read_table(args.utterances, "utterances")
    segments, pairs = build_validation_set(utts, args.pairs, args.segment_s, args.segments_per_session, args.seed,
                                           where=args.utterances)
    write_table(segments, args.segments, "segments")
    write_table(pairs, args.pairs_out, "trials")
    print(f"{len(pairs)} pairs ({int(pairs.label.sum())} target) over {len(segments)} segments of "
          f"{segments.spk_id.nunique()} speakers")


run(main)
