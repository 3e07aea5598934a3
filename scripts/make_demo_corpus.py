"""Build the built-in synthetic demo corpus (rule demo_corpus)."""
import argparse
import json

from voxflow.demo.corpus import make_demo_corpus
from voxflow.utils.scripting import json_arg, run


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", required=True, help="the config's demo section as JSON")
    args = ap.parse_args()
    cfg = json_arg(args.config, "--config")
    cfg.pop("enabled", None)
    print(json.dumps(make_demo_corpus(args.out, **cfg), indent=1))


run(main)
