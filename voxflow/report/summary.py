"""The results table laid out like the papers: rows systems, columns trial sets; plus diarization rows."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def _load(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def calibration_label(metrics: dict) -> str:
    """How a metrics file's scores were calibrated: none, LR (logistic regression) or QMF (with quality measures)."""
    cal = metrics.get("calibration")
    if not cal:
        return "none"
    return f"QMF ({', '.join(cal['quality'])})" if cal.get("quality") else "LR"


def verification_rows(metric_paths: list[str]) -> pd.DataFrame:
    """One row per system, back-end, calibration and trial set from ``EXP/<system>/scores/<trials>/<backend>.json``
    and ``EXP/<system>/calibrated/<trials>/<backend>.json``; Cllr and actual DCF where the scores are calibrated."""
    rows = []
    for path in metric_paths:
        p = Path(path)
        m = _load(p)
        row = {"task": "verification", "system": p.parents[2].name, "backend": p.stem,
               "calibration": calibration_label(m), "set": p.parent.name, "eer_%": 100 * m["eer"],
               "min_dcf_0.01": m["min_dcf_0.01"], "min_dcf_0.001": m["min_dcf_0.001"]}
        if "cllr" in m:
            row["cllr"] = m["cllr"]
            row[f"act_dcf_{m['p_target']:g}"] = m["act_dcf"]
        row["trials"] = m["n_target"] + m["n_nontarget"]
        rows.append(row)
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
    def fmt(v):
        if isinstance(v, float):
            return "-" if pd.isna(v) else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def summary_markdown(verification: pd.DataFrame, diarization: pd.DataFrame) -> str:
    """Markdown: the verification table as in the papers (rows system, back-end and calibration; per trial set
    EER %, minDCF, and Cllr / actual DCF for calibrated rows) and a diarization table."""
    parts = ["# voxflow results", "", "## Speaker verification", ""]
    if not verification.empty:
        ver = verification.copy()
        if "calibration" not in ver.columns:
            ver["calibration"] = "none"
        values = ["eer_%", "min_dcf_0.01", "min_dcf_0.001"]
        values += [c for c in ver.columns if c == "cllr" or c.startswith("act_dcf_")]
        index = ["system", "backend", "calibration"]
        wide = ver.pivot_table(index=index, columns="set", values=values, dropna=False)
        sets = list(dict.fromkeys(ver["set"]))
        wide = wide[[(m, s) for s in sets for m in values if (m, s) in wide.columns]]  # grouped by trial set
        wide.columns = [f"{s} {m}" for m, s in wide.columns]
        rows = ver[index].drop_duplicates()
        rows = rows.assign(_cal=rows.calibration != "none").sort_values(["system", "backend", "_cal"])
        wide = wide.reindex(pd.MultiIndex.from_frame(rows[index]))
        parts.append(_md_table(wide.reset_index()))
    else:
        parts.append("(none)\n")
    parts += ["## Diarization", "", _md_table(diarization.drop(columns=["task"], errors="ignore"))]
    return "\n".join(parts)
