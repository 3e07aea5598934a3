"""The results table laid out like the papers: rows systems, columns trial sets; plus diarization rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _load(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def verification_rows(metric_paths: list[str]) -> pd.DataFrame:
    """One row per system, back-end and trial set from ``EXP/<system>/scores/<trials>/<backend>.json``."""
    rows = []
    for path in metric_paths:
        p = Path(path)
        m = _load(p)
        rows.append({"task": "verification", "system": p.parents[2].name, "backend": p.stem,
                     "set": p.parent.name, "eer_%": 100 * m["eer"], "min_dcf_0.01": m["min_dcf_0.01"],
                     "min_dcf_0.001": m["min_dcf_0.001"], "trials": m["n_target"] + m["n_nontarget"]})
    return pd.DataFrame(rows)


def diarization_rows(der_paths: list[str]) -> pd.DataFrame:
    """One row per system and diarization set from ``EXP/<system>/diarization/<set>/der.json``."""
    rows = []
    for path in der_paths:
        p = Path(path)
        m = _load(p)
        rows.append({"task": "diarization", "system": p.parents[2].name, "set": p.parent.name,
                     "der_%": 100 * m["der"], "miss_%": 100 * m["miss"], "false_alarm_%": 100 * m["false_alarm"],
                     "confusion_%": 100 * m["confusion"], "collar_s": m.get("collar", 0.25)})
    return pd.DataFrame(rows)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "(none)\n"
    cols = list(df.columns)
    fmt = [lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt[0](v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def summary_markdown(verification: pd.DataFrame, diarization: pd.DataFrame) -> str:
    """Markdown: a verification table (EER %, minDCF) per trial set and a diarization table."""
    parts = ["# voxflow results", "", "## Speaker verification", ""]
    if not verification.empty:
        wide = verification.pivot_table(index=["system", "backend"], columns="set",
                                        values=["eer_%", "min_dcf_0.01", "min_dcf_0.001"])
        wide.columns = [f"{s} {m}" for m, s in wide.columns]
        parts.append(_md_table(wide.reset_index()))
    else:
        parts.append("(none)\n")
    parts += ["## Diarization", "", _md_table(diarization.drop(columns=["task"], errors="ignore"))]
    return "\n".join(parts)
