"""Diarize recordings from a config section (the workflow's ``diarization:``, or the CLI's flags): choice of
VAD and clustering with their settings, speaker counts fixed, per recording from a table, or from the reference."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from voxflow.diarize.pipeline import BLOCK_S, diarize_file
from voxflow.diarize.rttm import read_rttm
from voxflow.diarize.vad import VAD_SETTINGS
from voxflow.errors import VoxflowError

CLUSTER_SETTINGS = {
    "spectral": ("p_pruning", "min_neighbors"),
    "ahc": ("threshold", "min_cluster_size"),
    "umap_hdbscan": ("n_neighbors", "n_components", "min_dist", "min_cluster_size", "merge_threshold"),
}


def method(section, table: dict, what: str) -> tuple[str, dict]:
    """(name, settings) of a ``{name: ..., setting: value, ...}`` section (or a bare name): the settings that
    method ``name`` takes; those of the other methods (schema defaults) are ignored."""
    section = {"name": section} if isinstance(section, str) else dict(section)
    name = section.pop("name", None)
    if name not in table:
        raise VoxflowError(f"{what}.name {name!r}: must be one of {sorted(table)}")
    unknown = sorted(set(section) - {k for keys in table.values() for k in keys})
    if unknown:
        raise VoxflowError(f"{what}: unknown setting(s) {unknown}")
    return name, {k: v for k, v in section.items() if k in table[name]}


def speaker_counts(spec, recordings: list[str], refs: dict[str, pd.DataFrame] | None = None) -> dict:
    """Speaker count per recording (None: estimate): ``spec`` None, an integer, ``oracle`` (the number of speakers
    of each recording's reference turns ``refs``) or the path of a table of lines ``<recording> <count>``."""
    if spec is None or spec == "":
        return dict.fromkeys(recordings)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        if int(spec) < 1:
            raise VoxflowError(f"num_speakers={spec!r} must be >= 1")
        return dict.fromkeys(recordings, int(spec))
    if spec == "oracle":
        if refs is None:
            raise VoxflowError("num_speakers oracle needs reference RTTMs")
        return {r: int(refs[r]["speaker"].nunique()) for r in recordings}
    path = Path(spec)
    if not path.is_file():
        raise VoxflowError(f"num_speakers {spec!r}: neither an integer, 'oracle' nor an existing table file")
    table = {}
    for no, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise VoxflowError(f"{path}:{no}: expected '<recording> <count>' with a count >= 1, got {line!r}")
        table[fields[0]] = int(fields[1])
    missing = [r for r in recordings if r not in table]
    if missing:
        raise VoxflowError(f"{path}: no speaker count for {len(missing)} recording(s): {', '.join(missing[:5])}")
    return {r: table[r] for r in recordings}


def set_config(diarization: dict, overrides: dict | None, set_name: str) -> dict:
    """The ``diarization`` section as diarization set ``set_name`` uses it: its ``diarization`` entry
    ``overrides`` replaces keys; ``vad`` and ``clustering`` are updated setting by setting (a bare name, or a
    section with another ``name``, keeps the section's settings of that method)."""
    merged = dict(diarization)
    unknown = sorted(set(overrides or {}) - set(diarization) - {"overlap", "overlap_margin", "block_s"})
    if unknown:
        raise VoxflowError(f"diarization_sets.{set_name}.diarization: unknown key(s) {unknown}; "
                           f"it takes those of the diarization section: {sorted(diarization)}")
    for key, value in (overrides or {}).items():
        if key in ("vad", "clustering"):
            base = merged.get(key, {})
            base = {"name": base} if isinstance(base, str) else dict(base)
            merged[key] = {**base, **({"name": value} if isinstance(value, str) else dict(value))}
        else:
            merged[key] = value
    return merged


OVERLAP_MARGIN = 0.02  # cosine similarity; see the schema's diarization.overlap_margin


def overlap_margin(cfg: dict) -> float | None:
    """The overlap assignment's margin, or None when ``cfg['overlap']`` is off (the default)."""
    if not cfg.get("overlap", False):
        return None
    margin = cfg.get("overlap_margin", OVERLAP_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 2:
        raise VoxflowError(f"diarization.overlap_margin={margin!r}: a cosine similarity difference in [0, 2)")
    return float(margin)


def diarize_files(embedder, paths, cfg: dict, rttms: dict | None = None, where: str = "diarization") -> pd.DataFrame:
    """Turns of every recording in ``paths`` (the file stem is its id) diarized as ``cfg`` says.

    ``cfg`` is the config's ``diarization`` section (window_s, shift_s, vad, clustering, num_speakers,
    min_speakers, max_speakers, subseg_cmn, block_s, overlap, overlap_margin); ``rttms`` maps recording ids to
    reference RTTM files, needed by the oracle VAD and speaker counts (``where`` names the set in that error).
    """
    paths = [Path(p) for p in paths]
    ids = [p.stem for p in paths]
    vad, vad_kwargs = method(cfg.get("vad", "energy"), VAD_SETTINGS, "vad")
    clustering, cluster_kwargs = method(cfg.get("clustering", "spectral"), CLUSTER_SETTINGS, "clustering")
    oracle = [what for what, on in (("vad oracle", vad == "oracle"),
                                    ("num_speakers oracle", cfg.get("num_speakers") == "oracle")) if on]
    if oracle and not rttms:
        raise VoxflowError(f"{where}: {' and '.join(oracle)} {'needs' if len(oracle) == 1 else 'need'} reference "
                           "RTTMs, and there are none "
                           "(set the diarization set's rttm_dir, or pass --ref-rttm)")
    refs = None
    if rttms:
        refs = {}
        for r in ids:
            if r not in rttms:
                raise VoxflowError(f"{where}: no reference RTTM for recording {r}")
            ref = read_rttm(rttms[r])
            refs[r] = ref[ref["file_id"] == r]
    counts = speaker_counts(cfg.get("num_speakers"), ids, refs)
    turns = []
    for path, rec in zip(paths, ids):
        turns.append(diarize_file(
            path, embedder.sample_rate, rec, embedder, cfg.get("window_s", 1.5), cfg.get("shift_s", 0.75), counts[rec],
            cfg.get("max_speakers", 8), vad_kwargs, cluster_kwargs, vad=vad, clustering=clustering,
            min_speakers=cfg.get("min_speakers", 1), subseg_cmn=cfg.get("subseg_cmn", True),
            ref_turns=None if refs is None else refs[rec], block_s=cfg.get("block_s", BLOCK_S),
            overlap_margin=overlap_margin(cfg)))
        print(f"{rec}: {turns[-1].speaker.nunique()} speakers, {len(turns[-1])} turns")
    return pd.concat(turns, ignore_index=True)
