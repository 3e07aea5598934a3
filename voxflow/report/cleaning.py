"""What speaker cleaning removed, compared with a ground truth of known mislabels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from voxflow.errors import VoxflowError


def read_ground_truth(path: str | Path) -> pd.DataFrame:
    """CSV with columns utt_id, labeled_spk, true_spk."""
    p = Path(path)
    if not p.is_file():
        raise VoxflowError(f"{p}: cleaning ground-truth file not found")
    table = pd.read_csv(p, dtype=str)
    missing = {"utt_id", "labeled_spk", "true_spk"} - set(table.columns)
    if missing:
        raise VoxflowError(f"{p}: lacks column(s) {sorted(missing)}")
    return table


def compare_with_ground_truth(segments: pd.DataFrame, exclusions: pd.DataFrame, truth_path=None) -> dict:
    """Counts of excluded segments and utterances; with a ground truth, how many planted mislabels were caught.

    A planted utterance counts as caught when at least half of its segments were excluded.
    """
    seg_per_utt = segments.groupby("utt_id").size()
    exc_per_utt = exclusions.groupby("utt_id").size() if len(exclusions) else pd.Series(dtype=int)
    share = (exc_per_utt / seg_per_utt.reindex(exc_per_utt.index)).fillna(0.0)
    summary = {"segments": int(len(segments)), "segments_excluded": int(len(exclusions)),
               "utterances_touched": int(len(exc_per_utt)), "utterances_mostly_excluded": int((share >= 0.5).sum())}
    if truth_path is None:
        return summary
    truth = read_ground_truth(truth_path)
    planted = set(truth.utt_id)
    caught = sorted(u for u in planted if share.get(u, 0.0) >= 0.5)
    planted_segments = int(exc_per_utt[exc_per_utt.index.isin(planted)].sum()) if len(exc_per_utt) else 0
    summary.update(planted=len(planted), planted_caught=len(caught), caught=caught,
                   missed=sorted(planted - set(caught)),
                   segments_excluded_planted=planted_segments,
                   segments_excluded_other=int(len(exclusions)) - planted_segments,
                   other_utterances_touched=sorted(set(exc_per_utt.index) - planted))
    return summary


def cleaning_markdown(summary: dict, speakers: pd.DataFrame) -> str:
    """A short Markdown report of a cleaning run."""
    lines = ["# Speaker cleaning", "",
             f"Rule: drop G2 when |G1| > {summary.get('majority')} |G1 u G2| and silhouette > "
             f"{summary.get('min_silhouette')}.", "",
             f"- speakers: {summary.get('speakers')}, cleaned: {summary.get('speakers_cleaned')}",
             f"- segments: {summary['segments']}, excluded: {summary['segments_excluded']}",
             f"- utterances touched: {summary['utterances_touched']} "
             f"(mostly excluded: {summary['utterances_mostly_excluded']})"]
    if "planted" in summary:
        lines += [f"- planted mislabels caught: {summary['planted_caught']} of {summary['planted']}",
                  f"- excluded segments from planted utterances: {summary['segments_excluded_planted']}, "
                  f"from other utterances: {summary['segments_excluded_other']}",
                  f"- missed: {', '.join(summary['missed']) or 'none'}"]
    cleaned = speakers[speakers.excluded]
    if len(cleaned):
        lines += ["", "| speaker | segments | G1 | G2 | silhouette |", "|---|---|---|---|---|"]
        lines += [f"| {r.spk_id} | {r.n_segments} | {r.size_g1} | {r.size_g2} | {r.silhouette:.3f} |"
                  for r in cleaned.itertuples()]
    return "\n".join(lines) + "\n"
