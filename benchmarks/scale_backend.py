"""Rows 4 (extraction) and 5 (scoring at full size) of the VoxCeleb scale benchmark (benchmarks/scale.py).

    python benchmarks/scale_backend.py [--quick]     # these two rows alone

Each row is a dict: ``row``, ``measure`` (what, with its size), ``figure`` (measured, with unit), ``target``,
``wespeaker`` (ratio to the Wespeaker figure, or ""), ``verdict`` ("meets" or "misses: why, and what would").
The machine may be shared: rates are also given per CPU second, and the Wespeaker ratios use CPU time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules, however this is run

from scale_extraction import extraction_rows  # noqa: E402
from scale_scoring import scoring_rows  # noqa: E402

__all__ = ["extraction_rows", "scoring_rows"]


def main(argv: list[str]) -> None:
    quick = "--quick" in argv
    rows = extraction_rows(quick) + scoring_rows(quick)
    keys = ["row", "measure", "figure", "target", "wespeaker", "verdict"]
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
