"""Import a VoxCeleb, Kaldi or CN-Celeb trial list, checking every id against the corpus manifest (rule trials)."""
import argparse

from voxflow.data.manifests import read_table, write_table
from voxflow.corpora.trials import read_trial_list
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", required=True)
    ap.add_argument("--format", default="voxceleb", choices=["voxceleb", "kaldi", "cnceleb"])
    ap.add_argument("--enroll-list", default=None, help="cnceleb: enroll.lst (default: beside the trial list)")
    ap.add_argument("--utterances", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    known = set(read_table(args.utterances, "utterances")["utt_id"])
    trials = read_trial_list(args.trials, fmt=args.format, known_ids=known, enroll_list=args.enroll_list or None)
    write_table(trials, args.out, "trials")
    print(f"{len(trials)} trials, {int(trials.label.sum())} targets")


run(main)
