"""Margin Matters' claim on the demo corpus: the same small x-vector, trained from the same seed for the same steps,
reaches a lower validation EER (VC_2sec-style pairs of held-out speakers, cosine scoring) with AAM-softmax than with
plain softmax. Both runs go through the real engine (data chain, trainer, LR schedule, validation after every epoch).

The settings were chosen offline, where the gap was measured over several training seeds (numbers at SLACK); the
assertion leaves slack so that it is not a coin flip."""

from __future__ import annotations

import pandas as pd

from voxflow.data.importers import import_voxceleb_dir
from voxflow.data.manifests import write_table
from voxflow.data.synth import make_demo_corpus
from voxflow.train.engine import run_stage
from voxflow.train.stage_config import resolve_stage
from voxflow.train.validation import ValidationSet, build_validation_set

CORPUS = dict(seed=0, n_dev_speakers=30, n_test_speakers=10, sessions_per_speaker=3, utts_per_session=3,
              min_dur_s=2.0, max_dur_s=2.5, n_mislabeled=0, n_conversations=0, n_noises=0, n_rirs=0)
EPOCHS = 16
SEED = 0
HEADS = {
    "softmax": {"name": "softmax"},
    # AAM-softmax with a scale for 30 classes: s = 32 (Margin Matters, 7,000+ speakers) saturates the loss with so
    # few classes and trained worse than softmax here; s = 6 is near the sqrt(2) ln(C - 1) = 4.8 of AdaCos.
    "aamsoftmax": {"name": "aamsoftmax", "scale": 6.0, "margin": 0.4},
}
# Softmax minus AAM-softmax validation EER measured offline for training seeds 0-4 (seed 0 is the one tested):
# mean of the last 3 epochs 0.026, 0.015, 0.051, 0.034, 0.025; last epoch 0.030, 0.003, 0.059, 0.034, 0.018.
# (12 epochs gave last-3 gaps down to 0.002, so the run is 16 epochs.)
SLACK = 0.01  # absolute EER, on the mean of the last 3 epochs


def experiment(head: dict) -> dict:
    """The demo's x-vector recipe, narrowed (64 channels) and without augmentation, one stage of EPOCHS epochs."""
    return {"device": "cpu", "seed": SEED,
            "model": {"name": "xvector", "channels": 64, "stats_channels": 192, "embed_dim": 64},
            "data": {"chunk_s": 2.0, "chunking": "random", "batch_size": 32, "shuffle_buffer": 1000,
                     "features": {"kind": "mfcc", "num_mel_bins": 30, "num_ceps": 30, "cmn": "sliding",
                                  "cmn_window": 300}},
            "optimizer": {"name": "adam", "lr": 0.002, "weight_decay": 1e-5},
            "scheduler": {"name": "warmup_exp", "warmup_epochs": 0.5, "final_lr": 0.0002},
            "warmup": {"epochs": EPOCHS, "head": head}, "tensorboard": False}


def test_aam_softmax_beats_softmax_on_validation_eer(tmp_path, one_thread):
    make_demo_corpus(tmp_path / "demo", **CORPUS)
    train = import_voxceleb_dir(tmp_path / "demo" / "dev" / "wav")
    held_out = import_voxceleb_dir(tmp_path / "demo" / "test" / "wav")
    segments, pairs = build_validation_set(held_out, pairs=540, segment_s=2.0, segments_per_session=3, seed=0)
    write_table(segments, tmp_path / "val_segments.parquet", "segments")  # what rule validation_pairs writes
    write_table(pairs, tmp_path / "val_pairs.parquet", "trials")
    valset = ValidationSet.from_files(tmp_path / "val_segments.parquet", tmp_path / "val_pairs.parquet")
    assert len(valset) == 540 and valset.labels.sum() == 270
    spk2id = {s: i for i, s in enumerate(sorted(train.spk_id.unique()))}

    eers = {}
    for name, head in HEADS.items():
        out = tmp_path / name
        run_stage(resolve_stage(experiment(head), "warmup"), train, train, spk2id, out, validation=valset)
        log = pd.read_parquet(out / "train_log.parquet")
        assert log.epoch.tolist() == list(range(1, EPOCHS + 1))
        assert log.val_eer.between(0.0, 0.5).all()
        eers[name] = log.val_eer.to_numpy()
    soft, margin = eers["softmax"], eers["aamsoftmax"]
    assert soft[-1] < 0.45  # softmax learned something: the comparison is between two trained networks
    assert margin[-3:].mean() < soft[-3:].mean() - SLACK, (soft, margin)  # the last three epochs on average
    assert margin[-1] <= soft[-1], (soft, margin)  # and the final one
