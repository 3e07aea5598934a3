"""Draw a calibration trial list (target pairs across sessions, non-target pairs) from a corpus manifest
(rule calibration_trials)."""
import argparse

from voxflow.backend.calibration_trials import sample_calibration_trials
from voxflow.data.manifests import read_table, write_table
from voxflow.utils.scripting import run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--utterances", required=True, help="manifest of the calibration corpus")
    ap.add_argument("--targets", type=int, default=5000)
    ap.add_argument("--nontargets", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="output: trials table (enroll_id, test_id, label)")
    args = ap.parse_args()
    utts = read_table(args.utterances, "utterances")
    trials = sample_calibration_trials(utts, args.targets, args.nontargets, args.seed, where=args.utterances)
    write_table(trials, args.out, "trials")
    print(f"{len(trials)} calibration trials ({int(trials.label.sum())} target) from {len(utts)} utterances of "
          f"{utts.spk_id.nunique()} speakers")


run(main)
