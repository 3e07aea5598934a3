import pandas as pd
import pytest

from voxflow.corpora.trials import read_trial_list, write_trial_list
from voxflow.errors import VoxflowError


def test_read_voxceleb_strips_audio_extensions_and_skips_blank_lines(tmp_path):
    p = tmp_path / "veri_test.txt"
    p.write_text(
        "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
        "\n"
        "0 id10270/x6uYqmx31kE/00001.flac id10300/ize_eiCFEg0/00003.M4A\n"
        "   \n"
        "1 a/b c.d/e.m4a\n"
    )
    df = read_trial_list(p)
    assert df["enroll_id"].tolist() == ["id10270/x6uYqmx31kE/00001", "id10270/x6uYqmx31kE/00001", "a/b"]
    assert df["test_id"].tolist() == ["id10270/8jEAjG6SegY/00008", "id10300/ize_eiCFEg0/00003", "c.d/e"]
    assert df["label"].tolist() == [1, 0, 1]
    assert df["label"].dtype == "int64"


def test_read_kaldi_format(tmp_path):
    p = tmp_path / "trials"
    p.write_text("spkA-utt1 spkA-utt2 target\nspkA-utt1 spkB-utt1 nontarget\n")
    df = read_trial_list(p, fmt="kaldi")
    assert df.to_dict("list") == {
        "enroll_id": ["spkA-utt1", "spkA-utt1"],
        "test_id": ["spkA-utt2", "spkB-utt1"],
        "label": [1, 0],
    }


@pytest.mark.parametrize(
    "fmt, bad_line",
    [
        ("voxceleb", "1 a.wav"),  # two fields
        ("voxceleb", "1 a.wav b.wav extra"),
        ("voxceleb", "2 a.wav b.wav"),  # bad label
        ("voxceleb", "target a.wav b.wav"),
        ("kaldi", "a b tgt"),
        ("kaldi", "a b 1"),
    ],
)
def test_malformed_line_names_file_line_and_content(tmp_path, fmt, bad_line):
    good = "1 x.wav y.wav" if fmt == "voxceleb" else "x y target"
    p = tmp_path / "trials.txt"
    p.write_text(f"{good}\n\n{bad_line}\n{good}\n")
    with pytest.raises(VoxflowError) as exc:
        read_trial_list(p, fmt=fmt)
    msg = str(exc.value)
    assert f"{p}:3" in msg
    assert bad_line in msg


def test_unknown_id_names_line_and_id(tmp_path):
    p = tmp_path / "trials.txt"
    p.write_text("1 a.wav b.wav\n0 a.wav c.wav\n0 zz.wav b.wav\n")
    assert len(read_trial_list(p, known_ids={"a", "b", "c", "zz"})) == 3
    with pytest.raises(VoxflowError) as exc:
        read_trial_list(p, known_ids={"a", "b", "zz"})
    msg = str(exc.value)
    assert f"{p}:2" in msg and "'c'" in msg and "test" in msg
    with pytest.raises(VoxflowError) as exc:
        read_trial_list(p, known_ids={"b", "c", "zz"})
    assert f"{p}:1" in str(exc.value) and "'a'" in str(exc.value) and "enroll" in str(exc.value)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(VoxflowError, match="not found"):
        read_trial_list(tmp_path / "nope.txt")
    (tmp_path / "t.txt").write_text("1 a b\n")
    with pytest.raises(VoxflowError, match="unknown trial list format"):
        read_trial_list(tmp_path / "t.txt", fmt="csv")


@pytest.mark.parametrize("fmt, suffix", [("voxceleb", ""), ("voxceleb", ".wav"), ("kaldi", "")])
def test_write_read_roundtrip(tmp_path, fmt, suffix):
    df = pd.DataFrame(
        {"enroll_id": ["s1/u1", "s1/u1", "s2/u9"], "test_id": ["s1/u2", "s3/u1", "s2/u8"], "label": [1, 0, 1]}
    )
    p = tmp_path / "out" / "trials.txt"
    write_trial_list(df, p, fmt=fmt, suffix=suffix)
    text = p.read_text().splitlines()
    if fmt == "voxceleb":
        assert text[0] == f"1 s1/u1{suffix} s1/u2{suffix}"
    else:
        assert text[1] == "s1/u1 s3/u1 nontarget"
    back = read_trial_list(p, fmt=fmt)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert list(tmp_path.joinpath("out").iterdir()) == [p]  # no temporary left behind


def test_write_rejects_bad_labels_and_whitespace_ids(tmp_path):
    with pytest.raises(VoxflowError, match="label"):
        write_trial_list(pd.DataFrame({"enroll_id": ["a"], "test_id": ["b"], "label": [2]}), tmp_path / "t")
    with pytest.raises(VoxflowError, match="whitespace"):
        write_trial_list(pd.DataFrame({"enroll_id": ["a b"], "test_id": ["b"], "label": [1]}), tmp_path / "t")
    with pytest.raises(VoxflowError, match="lacks column"):
        write_trial_list(pd.DataFrame({"enroll_id": ["a"], "label": [1]}), tmp_path / "t")
    assert not (tmp_path / "t").exists()


def test_empty_list_and_bool_labels(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_text("\n  \n")
    df = read_trial_list(p)
    assert list(df.columns) == ["enroll_id", "test_id", "label"] and len(df) == 0
    write_trial_list(pd.DataFrame({"enroll_id": ["a", "b"], "test_id": ["c", "d"], "label": [True, False]}), p)
    assert p.read_text() == "1 a c\n0 b d\n"
    with pytest.raises(VoxflowError, match="whitespace"):
        write_trial_list(pd.DataFrame({"enroll_id": [" a"], "test_id": ["c"], "label": [1]}), p)
