"""The results table laid out like the papers: rows systems, columns trial sets; plus diarization rows.

Every expected result gets a row: status ``ok`` from its file, or ``missing`` (with the path it expected) when a
failed or unfinished stage did not write it, so a partial run still has its summary (``voxflow summarize``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from voxflow.errors import VoxflowError
from voxflow.metrics.der import protocol_key, protocol_label
from voxflow.utils.atomic import atomic_path, write_text_atomic

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
_ID = ["task", "system", "backend", "calibration", "set", "status"]


def _load(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def load_workflow_config(configfile: str | Path, schema: str | Path = SCHEMA) -> dict:
    """A workflow config validated against the schema with its defaults filled, as the Snakefile reads it."""
    try:
        import yaml
        from snakemake.exceptions import WorkflowError
        from snakemake.utils import validate
    except ImportError as exc:
        raise VoxflowError(f"reading the workflow config needs Snakemake (pip install voxflow[workflow]): {exc}") \
            from exc
    for path in (configfile, schema):
        if not Path(path).is_file():
            raise VoxflowError(f"{path}: no such file")
    config = yaml.safe_load(Path(configfile).read_text()) or {}
    try:
        validate(config, str(schema))
    except WorkflowError as exc:
        raise VoxflowError(f"{configfile}: {exc}") from exc
    return config


def systems(config: dict) -> list[str]:
    """Experiments, plus their untrained baselines where asked for."""
    exps = config["experiments"]
    return list(exps) + [f"{e}_untrained" for e in exps if exps[e]["untrained_baseline"]]


def summary_inputs(config: dict) -> dict[str, list[str]]:
    """The metrics files (scores, then calibrated) and DER files of rule summary, in its order."""
    exp, sets, backends = config["exp_dir"], list(config["trial_sets"]), list(config["backends"])
    kinds = ["scores", "calibrated"] if config["calibration"]["enabled"] else ["scores"]
    metrics = [f"{exp}/{s}/{k}/{t}/{b}.json" for k in kinds for s in systems(config) for t in sets for b in backends]
    der = [f"{exp}/{e}/diarization/{d}/der.json" for e in config["experiments"]
           for d, spec in config["diarization_sets"].items() if spec["rttm_dir"]]
    return {"metrics": metrics, "der": der}


def calibration_label(metrics: dict) -> str:
    """How a metrics file's scores were calibrated: none, LR (logistic regression) or QMF (with quality measures)."""
    cal = metrics.get("calibration")
    if not cal:
        return "none"
    return f"QMF ({', '.join(cal['quality'])})" if cal.get("quality") else "LR"


def _ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Identifying columns first, then the numbers, then the path."""
    if "trials" in df.columns:
        df["trials"] = df["trials"].astype("Int64")  # stays an integer next to missing rows
    ids = [c for c in _ID if c in df.columns]
    return df[ids + [c for c in df.columns if c not in ids and c != "path"] + (["path"] if "path" in df else [])]


def verification_rows(metric_paths: list[str], calibration: dict | None = None) -> pd.DataFrame:
    """One row per system, back-end, calibration and trial set from ``EXP/<system>/scores/<trials>/<backend>.json``
    and ``EXP/<system>/calibrated/<trials>/<backend>.json``; Cllr and actual DCF where the scores are calibrated.
    A path without a file gives a ``missing`` row, its calibration named from the config's ``calibration``."""
    rows = []
    for path in metric_paths:
        p = Path(path)
        row = {"task": "verification", "system": p.parents[2].name, "backend": p.stem}
        if not p.exists():
            cal = {"calibration": calibration or {}} if p.parents[1].name == "calibrated" else {}
            rows.append({**row, "calibration": calibration_label(cal), "set": p.parent.name, "status": "missing",
                         **dict.fromkeys(["eer_%", "min_dcf_0.01", "min_dcf_0.001"], float("nan")), "path": str(path)})
            continue
        m = _load(p)
        row.update({"calibration": calibration_label(m), "set": p.parent.name, "status": "ok",
                    "eer_%": 100 * m["eer"], "min_dcf_0.01": m["min_dcf_0.01"], "min_dcf_0.001": m["min_dcf_0.001"]})
        if "cllr" in m:
            row["cllr"] = m["cllr"]
            row[f"act_dcf_{m['p_target']:g}"] = m["act_dcf"]
        row["trials"] = m["n_target"] + m["n_nontarget"]
        rows.append({**row, "path": str(path)})
    return _ordered(pd.DataFrame(rows))


# The diarization columns besides the main protocol's der_% / miss_% / false_alarm_% / confusion_% (named by its
# ``protocol`` column): column -> (what it is, collar (None: the row's), overlap skipped, metric) in der.json's
# ``protocols``.
DIARIZATION_EXTRA = {
    "der_collar0_%": ("DER, collar 0 s, overlap scored", 0.0, False, "der"),
    "der_skip_overlap_%": ("DER, the row's collar, overlap skipped", None, True, "der"),
    "jer_%": ("JER, collar 0 s, overlap scored (as DIHARD-II)", 0.0, False, "jer"),
}


def diarization_rows(der_paths: list[str]) -> pd.DataFrame:
    """One row per system and diarization set from ``EXP/<system>/diarization/<set>/der.json`` (``missing`` rows
    for paths without a file): the main protocol's DER and parts, named in ``protocol``, then the
    ``DIARIZATION_EXTRA`` columns (NaN for a der.json from before ``protocols``)."""
    rows = []
    for path in der_paths:
        p = Path(path)
        row = {"task": "diarization", "system": p.parents[2].name, "set": p.parent.name}
        if not p.exists():
            rows.append({**row, "status": "missing", "der_%": float("nan"), "path": str(path)})
            continue
        m = _load(p)
        collar, protocols = m.get("collar", 0.25), m.get("protocols", {})
        extra = {}
        for column, (_, c, skip, metric) in DIARIZATION_EXTRA.items():
            key = protocol_key(collar if c is None else c, skip)
            extra[column] = 100 * protocols.get(key, {}).get(metric, float("nan"))
        rows.append({**row, "status": "ok", "protocol": m.get("protocol", protocol_label(collar, False)),
                     "der_%": 100 * m["der"], "miss_%": 100 * m["miss"], "false_alarm_%": 100 * m["false_alarm"],
                     "confusion_%": 100 * m["confusion"], **extra, "collar_s": collar, "path": str(path)})
    return _ordered(pd.DataFrame(rows))


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
    parts += ["## Diarization", "", _md_table(diarization.drop(columns=["task", "status", "path"], errors="ignore"))]
    if not diarization.empty:
        legend = [f"`{c}`: {what}" for c, (what, *_) in DIARIZATION_EXTRA.items()]
        parts += ["DER protocols: `der_%`, `miss_%`, `false_alarm_%` and `confusion_%` are scored as the row's "
                  "`protocol` says (md-eval's collar on each side of every reference boundary); "
                  + "; ".join(legend) + ".", ""]
    missing = missing_rows(verification, diarization)
    if not missing.empty:
        parts += ["## Missing", "", f"{len(missing)} expected result(s) have no file: a stage failed or did not run "
                  "(see logs/); rerun Snakemake to make them.", "", _md_table(missing)]
    return "\n".join(parts)


def missing_rows(verification: pd.DataFrame, diarization: pd.DataFrame) -> pd.DataFrame:
    """The ``missing`` rows of both tables: task, system, back-end, calibration, set and the path expected."""
    both = pd.concat([verification, diarization], ignore_index=True)
    if "status" not in both.columns:
        return pd.DataFrame()
    cols = [c for c in [*_ID[:-1], "path"] if c in both.columns]
    return both.loc[both.status == "missing", cols].reset_index(drop=True)


def write_summary(csv: str | os.PathLike, md: str | os.PathLike, metrics: list[str], der: list[str],
                  calibration: dict | None = None) -> tuple[pd.DataFrame, str]:
    """Write the summary CSV (verification then diarization rows) and its Markdown; returns both."""
    ver, dia = verification_rows(metrics, calibration), diarization_rows(der)
    table = _ordered(pd.concat([ver, dia], ignore_index=True))
    with atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    text = summary_markdown(ver, dia)
    write_text_atomic(md, text)
    return table, text


def summarize(config: dict) -> tuple[pd.DataFrame, str]:
    """``{results_dir}/summary.csv`` and ``summary.md`` of what exists of the results ``config`` expects (paths
    relative to the working directory), each absent one a ``missing`` row: the table of rule summary.
    Returns the table and a line saying where it is and what is missing."""
    inputs, results = summary_inputs(config), config["results_dir"]
    table, _ = write_summary(f"{results}/summary.csv", f"{results}/summary.md", inputs["metrics"], inputs["der"],
                             config["calibration"])
    n_missing = int((table.status == "missing").sum()) if len(table) else 0
    missing = f", {n_missing} missing (listed under Missing in summary.md)" if n_missing else ", none missing"
    return table, f"{results}/summary.csv and summary.md: {len(table)} expected results{missing}"
