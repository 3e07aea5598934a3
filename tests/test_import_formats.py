"""Local corpus formats: VoxCeleb layout, Kaldi directories, Wespeaker lists, diarization sets, m4a conversion."""

import io
import json
import shutil
import subprocess
import tarfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from voxflow.audio.io import audio_info, read_audio
from voxflow.corpus_cli import main as corpus_main
from voxflow.corpora.convert import convert_to_wav, convert_tree
from voxflow.corpora.importers import import_diarization_dir, import_voxceleb_dir
from voxflow.corpora.kaldi import export_kaldi_dir, import_kaldi_dir
from voxflow.data.manifests import read_table
from voxflow.corpora.wespeaker_lists import export_wespeaker_list, import_wespeaker_list
from voxflow.errors import VoxflowError

SR = 16000
HAVE_FFMPEG = shutil.which("ffmpeg") is not None


def tone(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def vox_dir(tmp_path):
    """VoxCeleb layout: 2 speakers x 2 sessions x 2 utterances of distinct tones and lengths."""
    root = tmp_path / "vox" / "wav"
    k = 0
    for spk in ("id10001", "id10002"):
        for session in ("1zcIwhmdeo4", "7gWzIy6yIIk"):
            for utt in ("00001", "00002"):
                path = root / spk / session / f"{utt}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, tone(200 + 50 * k, 0.5 + 0.1 * k), SR, subtype="PCM_16")
                k += 1
    return root


def kaldi_dir_for(vox_root, out, relative=False):
    """A hand-written Kaldi directory over the same files, utterance ids spk/session/utt."""
    out.mkdir(parents=True)
    wavs = sorted(vox_root.rglob("*.wav"))
    ids = [str(w.relative_to(vox_root).with_suffix("")) for w in wavs]
    paths = [w.relative_to(out.parent) if relative else w for w in wavs]
    (out / "wav.scp").write_text("".join(f"{u} {'../' + str(p) if relative else p}\n" for u, p in zip(ids, paths)))
    (out / "utt2spk").write_text("".join(f"{u} {u.split('/')[0]}\n" for u in ids))
    spk2utt = {}
    for u in ids:
        spk2utt.setdefault(u.split("/")[0], []).append(u)
    (out / "spk2utt").write_text("".join(f"{s} {' '.join(us)}\n" for s, us in spk2utt.items()))
    return out


def test_voxceleb_layout_and_kaldi_dir_of_the_same_audio_give_the_same_manifest(vox_dir, tmp_path):
    vox = import_voxceleb_dir(vox_dir)
    kaldi = import_kaldi_dir(kaldi_dir_for(vox_dir, tmp_path / "kaldi"))
    pd.testing.assert_frame_equal(vox, kaldi)
    relative = import_kaldi_dir(kaldi_dir_for(vox_dir, tmp_path / "kaldi_rel", relative=True))
    pd.testing.assert_frame_equal(vox, relative)
    assert vox["session_id"].tolist()[:2] == ["id10001/1zcIwhmdeo4", "id10001/1zcIwhmdeo4"]
    assert len(vox) == 8 and vox["num_samples"].iloc[1] == int(0.6 * SR)


def test_kaldi_and_wespeaker_exports_import_back_unchanged(vox_dir, tmp_path):
    vox = import_voxceleb_dir(vox_dir, corpus="vox")
    out = export_kaldi_dir(vox, tmp_path / "exported")
    assert sorted(p.name for p in out.iterdir()) == ["spk2utt", "utt2dur", "utt2spk", "wav.scp"]
    assert (out / "spk2utt").read_text().splitlines()[0].split() == ["id10001"] + vox["utt_id"].tolist()[:4]
    pd.testing.assert_frame_equal(vox, import_kaldi_dir(out, corpus="vox"))
    export_kaldi_dir(vox.iloc[:2], out)  # replaces the earlier export atomically
    assert len((out / "wav.scp").read_text().splitlines()) == 2

    lst = export_wespeaker_list(vox, tmp_path / "raw.list", key_suffix=".wav")
    first = json.loads(lst.read_text().splitlines()[0])
    assert first == {"key": "id10001/1zcIwhmdeo4/00001.wav", "wav": vox["path"].iloc[0], "spk": "id10001"}
    pd.testing.assert_frame_equal(vox, import_wespeaker_list(lst, corpus="vox"))


def test_pipe_commands_are_refused_unless_allowed(vox_dir, tmp_path):
    d = kaldi_dir_for(vox_dir, tmp_path / "k")
    lines = (d / "wav.scp").read_text().splitlines()
    utt, path = lines[2].split(maxsplit=1)
    lines[2] = f"{utt} cat {path} |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(VoxflowError) as err:
        import_kaldi_dir(d)
    assert f"{d / 'wav.scp'}:3" in str(err.value) and "pipe" in str(err.value)
    table = import_kaldi_dir(d, allow_pipes=True, audio_dir=tmp_path / "piped")
    row = table.set_index("utt_id").loc[utt]
    assert row["path"] == str((tmp_path / "piped" / f"{utt}.wav").resolve())
    np.testing.assert_allclose(read_audio(row["path"])[0], read_audio(path)[0], atol=1e-4)
    pd.testing.assert_frame_equal(table.drop(columns="path"), import_voxceleb_dir(vox_dir).drop(columns="path"))

    lines[2] = f"{utt} sh -c 'echo broken >&2; exit 3' |"
    (d / "wav.scp").write_text("\n".join(lines) + "\n")
    with pytest.raises(VoxflowError, match=r"wav.scp:3: command .* exit code 3: broken"):
        import_kaldi_dir(d, allow_pipes=True, audio_dir=tmp_path / "piped2")


@pytest.mark.parametrize("file, content, message", [
    ("spk2utt", "id10001 id10001/1zcIwhmdeo4/00001\nid10002 id10001/1zcIwhmdeo4/00002\n",
     r"spk2utt:2: utterance 'id10001/1zcIwhmdeo4/00002' under speaker 'id10002'"),
    ("utt2spk", "id10001/1zcIwhmdeo4/00001 id10001\nid10009/x/1 id10009\n",
     r"utt2spk:2: utterance 'id10009/x/1' is not in .*wav.scp"),
    ("utt2spk", "id10001/1zcIwhmdeo4/00001 id10001 extra\n", r"utt2spk:1: expected 2 fields"),
    ("wav.scp", "id10001/1zcIwhmdeo4/00001 /no/such/file.wav\n", r"wav.scp:1: audio file /no/such/file.wav"),
    ("wav.scp", "id10001/1zcIwhmdeo4/00001 data/raw.ark:1234\n", r"wav.scp:1: .*archive offset"),
])
def test_inconsistent_kaldi_files_are_named_with_their_line(vox_dir, tmp_path, file, content, message):
    d = kaldi_dir_for(vox_dir, tmp_path / "k")
    if file != "spk2utt":
        (d / "spk2utt").unlink()  # optional; checked against utt2spk first when present
    if file == "wav.scp":  # replace the first recording only
        content += "".join(line + "\n" for line in (d / file).read_text().splitlines()[1:])
    (d / file).write_text(content)
    with pytest.raises(VoxflowError, match=message):
        import_kaldi_dir(d)


def test_segments_become_utterances_with_start_and_end(tmp_path):
    rec = tmp_path / "audio" / "meeting.wav"
    rec.parent.mkdir()
    sf.write(rec, tone(300, 3.0), SR, subtype="PCM_16")
    d = tmp_path / "k"
    d.mkdir()
    (d / "wav.scp").write_text(f"meeting {rec}\n")
    (d / "segments").write_text("spkA-0001 meeting 0.00 1.00\nspkB-0002 meeting 1.50 -1\n")
    (d / "utt2spk").write_text("spkA-0001 spkA\nspkB-0002 spkB\n")
    table = import_kaldi_dir(d)
    assert table[["utt_id", "recording_id", "start_s", "end_s"]].values.tolist() == [
        ["spkA-0001", "meeting", 0.0, 1.0], ["spkB-0002", "meeting", 1.5, 3.0]]
    assert table["num_samples"].tolist() == [16000, 24000] and table["duration_s"].tolist() == [1.0, 1.5]
    assert set(table["path"]) == {str(rec.resolve())} and set(table["session_id"]) == {"meeting"}

    out = export_kaldi_dir(table, tmp_path / "exported")
    assert (out / "segments").read_text() == "spkA-0001 meeting 0.000 1.000\nspkB-0002 meeting 1.500 3.000\n"
    pd.testing.assert_frame_equal(table, import_kaldi_dir(out))
    with pytest.raises(VoxflowError, match="cannot express"):
        export_wespeaker_list(table, tmp_path / "x.list")

    (d / "segments").write_text("spkA-0001 meeting 0.00 1.00\nspkB-0002 meeting 2.50 3.50\n")
    with pytest.raises(VoxflowError, match=r"segments:2: segment 2.5-3.5 s .* beyond the end"):
        import_kaldi_dir(d)


def test_wespeaker_shard_list_is_unpacked(vox_dir, tmp_path):
    """A Wespeaker shard: members '<key>.spk' and '<key>.wav' with keys like 'id/session/utt.wav'."""
    vox = import_voxceleb_dir(vox_dir)
    shard = tmp_path / "shards" / "shard_000000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tf:
        for utt, spk, path in zip(vox["utt_id"], vox["spk_id"], vox["path"]):
            for name, data in ((f"{utt}.wav.spk", spk.encode()), (f"{utt}.wav.wav", open(path, "rb").read())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (tmp_path / "shard.list").write_text("shards/shard_000000.tar\n")
    with pytest.raises(VoxflowError, match="is a shard list; give audio_dir"):
        import_wespeaker_list(tmp_path / "shard.list")
    table = import_wespeaker_list(tmp_path / "shard.list", audio_dir=tmp_path / "unpacked")
    pd.testing.assert_frame_equal(table.drop(columns="path"), vox.drop(columns="path"))
    assert (tmp_path / "unpacked" / "id10002/7gWzIy6yIIk/00002.wav").read_bytes() == open(vox["path"].iloc[-1],
                                                                                          "rb").read()


@pytest.mark.parametrize("line, message", [
    ('{"key": "a", "wav": "x.wav"}', r"raw.list:2: key\(s\) \['spk'\] missing"),
    ('["a", "b"]', r"raw.list:2: expected a JSON object"),
    ('{"key": "a", "wav": "nowhere.wav", "spk": "s"}', r"raw.list:2: audio file .*nowhere.wav"),
    ("{not json", r"raw.list:2: not a JSON object"),
])
def test_bad_wespeaker_lines_are_named(vox_dir, tmp_path, line, message):
    first = json.dumps({"key": "id10001/1zcIwhmdeo4/00001.wav", "wav": str(vox_dir / "id10001/1zcIwhmdeo4/00001.wav"),
                        "spk": "id10001"})
    (tmp_path / "raw.list").write_text(f"{first}\n{line}\n")
    with pytest.raises(VoxflowError, match=message):
        import_wespeaker_list(tmp_path / "raw.list")


def diarization_set(tmp_path, names=("abjxc", "afjiv")):
    audio, rttm = tmp_path / "audio", tmp_path / "rttm"
    audio.mkdir()
    rttm.mkdir()
    for name in names:
        sf.write(audio / f"{name}.wav", tone(250, 1.0), SR, subtype="PCM_16")
        (rttm / f"{name}.rttm").write_text(f"SPEAKER {name} 1 0.000 0.500 <NA> <NA> spk00 <NA> <NA>\n")
    return audio, rttm


def test_diarization_dir_pairs_audio_rttm_and_uem(tmp_path):
    audio, rttm = diarization_set(tmp_path)
    uem = tmp_path / "all.uem"
    uem.write_text("abjxc 1 0.0 1.0\nafjiv 1 0.0 1.0\n")
    table = import_diarization_dir(audio, rttm, uem)
    assert table["recording_id"].tolist() == ["abjxc", "afjiv"]
    assert table["rttm_path"].tolist() == [str((rttm / f"{n}.rttm").resolve()) for n in ("abjxc", "afjiv")]
    assert set(table["uem_path"]) == {str(uem.resolve())} and table["duration_s"].tolist() == [1.0, 1.0]
    assert import_diarization_dir(audio, rttm)["uem_path"].isna().all()


def test_diarization_dir_mismatches_are_errors(tmp_path):
    audio, rttm = diarization_set(tmp_path)
    (rttm / "afjiv.rttm").rename(rttm / "zzzzz.rttm")
    with pytest.raises(VoxflowError, match=r"rttm: no RTTM for 1 recording\(s\) .*: afjiv"):
        import_diarization_dir(audio, rttm)
    (audio / "afjiv.wav").unlink()
    with pytest.raises(VoxflowError, match=r"audio: no audio for 1 RTTM file\(s\) .*: zzzzz"):
        import_diarization_dir(audio, rttm)
    (rttm / "zzzzz.rttm").unlink()
    (rttm / "abjxc.rttm").write_text("SPEAKER other 1 0.0 0.5 <NA> <NA> spk00 <NA> <NA>\n")
    with pytest.raises(VoxflowError, match=r"abjxc.rttm: SPEAKER lines name file id\(s\) \['other'\]"):
        import_diarization_dir(audio, rttm)
    (rttm / "abjxc.rttm").write_text("SPEAKER abjxc 1 0.0 0.5 <NA> <NA> spk00 <NA> <NA>\n")
    uems = tmp_path / "uems"
    uems.mkdir()
    with pytest.raises(VoxflowError, match=r"uems: no UEM file for 1 recording\(s\): abjxc"):
        import_diarization_dir(audio, rttm, uems)


def test_missing_ffmpeg_is_a_clear_error(tmp_path):
    src = tmp_path / "a.wav"
    sf.write(src, tone(440, 0.2), SR)
    with pytest.raises(VoxflowError, match=r"install FFmpeg or use the conda env envs/ffmpeg.yaml"):
        convert_to_wav(src, tmp_path / "b.wav", ffmpeg="no-such-ffmpeg-binary")


def dominant_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * sr / len(wav))


@pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg not installed")
@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_voxceleb2_m4a_tree_is_converted(tmp_path, fmt):
    src_root = tmp_path / "aac"
    for i, rel in enumerate(["id00012/21Uxsk56VDQ/00001", "id00012/21Uxsk56VDQ/00002"]):
        wav = tmp_path / f"src{i}.wav"
        sf.write(wav, tone(440 * (i + 1), 1.0, 44100), 44100, subtype="PCM_16")
        m4a = src_root / f"{rel}.m4a"
        m4a.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(wav), "-c:a", "aac", "-b:a", "64k",
                        str(m4a)], check=True)
    report = convert_tree(src_root, tmp_path / fmt, fmt=fmt, jobs=2)
    assert (report.converted, report.skipped) == (2, 0)
    for i, rel in enumerate(["id00012/21Uxsk56VDQ/00001", "id00012/21Uxsk56VDQ/00002"]):
        out = tmp_path / fmt / f"{rel}.{fmt}"
        sr, n, channels = audio_info(out)
        assert (sr, channels) == (SR, 1) and abs(n - SR) < 0.05 * SR
        assert abs(dominant_hz(read_audio(out)[0], sr) - 440 * (i + 1)) < 5
    assert convert_tree(src_root, tmp_path / fmt, fmt=fmt).skipped == 2
    bad = src_root / "id00012/broken/00001.m4a"
    bad.parent.mkdir()
    bad.write_bytes(b"not audio")
    with pytest.raises(VoxflowError, match=r"broken/00001.m4a: ffmpeg could not convert it"):
        convert_tree(src_root, tmp_path / fmt, fmt=fmt)
    assert not (tmp_path / fmt / "id00012/broken/00001").with_suffix(f".{fmt}").exists()


def test_cli_import_export_round_trip_and_one_line_errors(vox_dir, tmp_path, capsys):
    corpus_main(["import", str(vox_dir), "--format", "voxceleb", "--out", str(tmp_path / "vox.parquet")])
    corpus_main(["export", str(tmp_path / "vox.parquet"), "--format", "kaldi", "--out", str(tmp_path / "kd")])
    corpus_main(["import", str(tmp_path / "kd"), "--format", "kaldi", "--out", str(tmp_path / "kd.parquet"),
                 "--corpus", "wav"])
    pd.testing.assert_frame_equal(read_table(tmp_path / "vox.parquet", "utterances"),
                                  read_table(tmp_path / "kd.parquet", "utterances"))
    assert "8 utterances, 2 speakers" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        corpus_main(["import", str(tmp_path / "nowhere"), "--format", "kaldi", "--out", str(tmp_path / "x.parquet")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'nowhere'}: Kaldi data directory not found"]


def test_musan_layout_speech_is_the_babble_pool(tmp_path, caplog):
    from voxflow.corpora.importers import import_augmentation_dir

    root = tmp_path / "musan"
    for sub, n in (("noise/free-sound", 2), ("music/fma", 1), ("speech/librivox", 3)):
        for i in range(n):
            path = root / sub / f"{sub.split('/')[0]}-{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone(100 + 30 * i, 0.2), SR)
    table = import_augmentation_dir(root, "noise")
    assert table.kind.value_counts().to_dict() == {"babble": 3, "noise": 2, "music": 1}
    odd = root / "applause" / "a.wav"
    odd.parent.mkdir()
    sf.write(odd, tone(300, 0.2), SR)
    pd.testing.assert_frame_equal(import_augmentation_dir(root, "noise"), table)  # other folders: left out
    assert "left out" in caplog.text and "applause" in caplog.text
    with pytest.raises(VoxflowError, match="no .wav or .flac files under noise/, music/, babble/"):
        import_augmentation_dir(odd.parent, "noise")
