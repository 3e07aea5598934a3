"""Corpus layouts as users have them (symbolic links, two-level folders, extra folders) and corrupt audio named."""

import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.audio.io import audio_info, read_audio
from voxflow.backend.calibration_trials import sample_calibration_trials
from voxflow.corpus_cli import main as corpus_main
from voxflow.corpora.importers import import_augmentation_dir, import_diarization_dir, import_voxceleb_dir
from voxflow.errors import VoxflowError
from voxflow.train.validation import build_validation_set

SR = 16000


def tone(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, seconds=0.25, freq=200.0, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(freq, seconds), SR, **kwargs)
    return path


def musan(root):
    for rel in ("noise/free-sound/n1.wav", "noise/sound-bible/n2.flac", "music/fma/m1.wav",
                "speech/librivox/s1.wav", "speech/us-gov/s2.wav"):
        write(root / rel)
    return root


def test_wav_and_flac_manifest_is_unchanged(tmp_path):
    root = tmp_path / "vox"
    write(root / "id1" / "sA" / "00001.wav", 0.5)
    write(root / "id1" / "sB" / "00001.flac", 0.25)
    write(root / "id2" / "sA" / "00002.wav", 0.75, subtype="FLOAT")
    expected = pd.DataFrame({
        "utt_id": ["id1/sA/00001", "id1/sB/00001", "id2/sA/00002"], "spk_id": ["id1", "id1", "id2"],
        "session_id": ["id1/sA", "id1/sB", "id2/sA"],
        "path": [str(p.resolve()) for p in sorted(root.rglob("0*.*"))],
        "sample_rate": [SR] * 3, "num_samples": [8000, 4000, 12000], "duration_s": [0.5, 0.25, 0.75],
        "corpus": ["c"] * 3})
    pd.testing.assert_frame_equal(import_voxceleb_dir(root, corpus="c"), expected)


def test_links_to_files_and_directories_are_followed(tmp_path):
    store = musan(tmp_path / "store")
    noise = tmp_path / "noise_links"
    noise.mkdir()
    (noise / "noise").symlink_to(store / "noise")  # a link to a directory
    (noise / "music").mkdir()
    (noise / "music" / "m1.wav").symlink_to(store / "music" / "fma" / "m1.wav")  # links to files
    (noise / "speech").mkdir()
    for p in (store / "speech").rglob("*.wav"):
        (noise / "speech" / p.name).symlink_to(p)
    table = import_augmentation_dir(noise, "noise")
    pd.testing.assert_frame_equal(table.sort_values("path", ignore_index=True),
                                  import_augmentation_dir(store, "noise").sort_values("path", ignore_index=True))
    assert table.kind.value_counts().to_dict() == {"babble": 2, "noise": 2, "music": 1}

    rirs = tmp_path / "rir_links"
    rirs.mkdir()
    (rirs / "simulated").symlink_to(store / "noise")
    assert import_augmentation_dir(rirs, "rir").kind.tolist() == ["rir", "rir"]

    corpus_store = tmp_path / "vox_store"
    for spk in ("id1", "id2"):
        for utt in ("00001", "00002"):
            write(corpus_store / spk / "sess" / f"{utt}.wav")
    corpus = tmp_path / "vox_links"
    (corpus / "id1").mkdir(parents=True)
    (corpus / "id1" / "sess").symlink_to(corpus_store / "id1" / "sess")
    (corpus / "id2" / "sess").mkdir(parents=True)
    for p in (corpus_store / "id2" / "sess").iterdir():
        (corpus / "id2" / "sess" / p.name).symlink_to(p)
    pd.testing.assert_frame_equal(import_voxceleb_dir(corpus), import_voxceleb_dir(corpus_store))

    (corpus / "id2" / "sess" / "00003.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(VoxflowError, match="00003.wav: broken symbolic link"):
        import_voxceleb_dir(corpus)


def test_link_loops_and_directories_reached_twice_are_refused(tmp_path):
    root = tmp_path / "vox"
    write(root / "id1" / "sess" / "00001.wav")
    loop = root / "id1" / "sess" / "again"
    loop.symlink_to(root / "id1")
    with pytest.raises(VoxflowError, match="symbolic link loop") as err:
        import_voxceleb_dir(root)
    assert str(loop) in str(err.value) and str(root / "id1") in str(err.value)
    loop.unlink()
    (root / "id2").symlink_to(root / "id1")
    with pytest.raises(VoxflowError, match="reached twice through symbolic links") as err:
        import_voxceleb_dir(root)
    assert str(root / "id1") in str(err.value) and str(root / "id2") in str(err.value)


def test_noise_dir_uses_known_folders_and_warns_about_the_rest(tmp_path, caplog):
    root = musan(tmp_path / "musan")
    write(root / "rir" / "r1.wav")
    (root / "README").write_text("MUSAN\n")
    table = import_augmentation_dir(root, "noise")
    assert table.kind.value_counts().to_dict() == {"babble": 2, "noise": 2, "music": 1}
    assert not table.path.str.contains("/rir/").any()
    warning = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warning) == 1 and warning[0].endswith("README, rir")
    (root / "babble").symlink_to(root / "speech")  # the link the README used to suggest: read once
    pd.testing.assert_frame_equal(import_augmentation_dir(root, "noise"), table)


def test_two_level_corpus_and_its_sessions(tmp_path, caplog):
    root = tmp_path / "flat"
    for name in ("1zcIwhmdeo4_00001", "1zcIwhmdeo4_00002", "7gWz-Iy6_00001", "19-198-0001", "plain"):
        write(root / "id1" / f"{name}.wav", 2.5)
    table = import_voxceleb_dir(root)
    assert table.utt_id.tolist()[:2] == ["id1/19-198-0001", "id1/1zcIwhmdeo4_00001"]
    assert table.session_id.tolist() == ["id1/19-198", "id1/1zcIwhmdeo4", "id1/1zcIwhmdeo4", "id1/7gWz-Iy6", "id1"]

    no_sessions = tmp_path / "no_sessions"
    for spk in ("a", "b"):
        for utt in ("00001", "00002"):
            write(no_sessions / spk / f"{utt}.wav", 2.5)
    utts = import_voxceleb_dir(no_sessions)
    assert utts.session_id.tolist() == ["a", "a", "b", "b"]  # one session per speaker
    with pytest.raises(VoxflowError, match="no speaker has segments from two sessions"):
        build_validation_set(utts, pairs=4)  # validation pairs need sessions: a clear error, not an empty set
    trials = sample_calibration_trials(utts, 2, 2)  # calibration falls back to same-session pairs, and says so
    assert trials.label.sum() == 2 and "no speaker has two sessions" in caplog.text


def test_mixed_layouts_are_refused(tmp_path):
    root = tmp_path / "mixed"
    two = write(root / "id1" / "00001.wav")
    three = write(root / "id2" / "sess" / "00001.wav")
    with pytest.raises(VoxflowError, match="mixed layouts") as err:
        import_voxceleb_dir(root)
    assert str(two) in str(err.value) and str(three) in str(err.value)
    two.unlink()
    deep = write(root / "id3" / "a" / "b" / "00001.wav")
    with pytest.raises(VoxflowError, match=f"{deep}: not in VoxCeleb layout"):
        import_voxceleb_dir(root)


def test_diarization_duplicate_names_name_both_files(tmp_path):
    audio, rttm = tmp_path / "audio", tmp_path / "rttm"
    first, second = write(audio / "dev" / "rec1.wav"), write(audio / "test" / "rec1.flac")
    (rttm / "dev").mkdir(parents=True)
    (rttm / "dev" / "rec1.rttm").write_text("SPEAKER rec1 1 0.0 0.2 <NA> <NA> s1 <NA> <NA>\n")
    with pytest.raises(VoxflowError, match="also used by") as err:
        import_diarization_dir(audio, rttm)
    assert str(first) in str(err.value) and str(second) in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_audio_is_refused_naming_the_file(tmp_path, capsys, bad):
    root = tmp_path / "vox"
    write(root / "id1" / "s" / "00001.wav", subtype="FLOAT")
    x = tone(300, 0.25)
    x[1000] = bad
    path = root / "id1" / "s" / "00002.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    message = f"{path}: sample 1000 (0.062 s) is {bad}; audio with NaN or infinite samples cannot be used"
    with pytest.raises(VoxflowError) as err:
        import_voxceleb_dir(root)
    assert str(err.value).startswith(message)
    with pytest.raises(VoxflowError) as err:
        read_audio(path)
    assert str(err.value).startswith(message)
    with pytest.raises(SystemExit):
        corpus_main(["import", str(root), "--format", "voxceleb", "--out", str(tmp_path / "m.parquet")])
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and "Traceback" not in err
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([tone(300, 0.25), x], axis=1), SR, subtype="DOUBLE")
    with pytest.raises(VoxflowError, match=r"stereo.wav: sample 1000 \(0.062 s, channel 2\)"):
        audio_info(stereo)


def test_truncated_wav_is_refused_with_both_sizes(tmp_path):
    root = tmp_path / "vox"
    path = write(root / "id1" / "s" / "00001.wav", 0.5)  # 8000 16-bit samples: 16000 data bytes
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    with pytest.raises(VoxflowError) as err:
        import_voxceleb_dir(root)
    assert str(err.value).startswith(f"{path}: truncated WAV file: its header announces 16000 bytes of audio data, "
                                     "the file holds 15000 (1000 missing)")
    path.write_bytes(data[:4] + (0xFFFFFFFF).to_bytes(4, "little") + data[8:40] + b"\xff\xff\xff\xff" + data[44:])
    assert audio_info(path) == (SR, 8000, 1)  # a streamed WAV (no length in its header) is complete
    os.truncate(path, len(data) - 10)
    assert audio_info(path)[1] == 7995
