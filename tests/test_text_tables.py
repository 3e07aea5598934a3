"""The keyed text-table reader behind Kaldi files, CN-Celeb speaker lists and enrolment lists."""
import pytest

from voxflow.corpora.importers import read_speaker_list
from voxflow.corpora.text_tables import read_keyed_table
from voxflow.corpora.trials import read_enroll_list
from voxflow.errors import VoxflowError


def test_keys_fields_and_line_numbers(tmp_path):
    f = tmp_path / "utt2spk"
    f.write_text("u1 spkA\n\n  u2   spkB  \n")
    assert read_keyed_table(f, 2, 2, "'<utt> <spk>'", "utt2spk") == {"u1": (["spkA"], 1), "u2": (["spkB"], 3)}


@pytest.mark.parametrize("text, message", [
    ("u1 a\nu2\n", r"utt2spk:2: expected 2 fields \('<utt> <spk>'\), got 1"),
    ("u1 a b\n", r"utt2spk:1: expected 2 fields"),
    ("u1 a\nu1 b\n", r"utt2spk:2: 'u1' repeats line 1"),
])
def test_bad_lines_are_named(tmp_path, text, message):
    f = tmp_path / "utt2spk"
    f.write_text(text)
    with pytest.raises(VoxflowError, match=message):
        read_keyed_table(f, 2, 2, "'<utt> <spk>'", "utt2spk")


def test_missing_and_undecodable_files_are_named(tmp_path):
    with pytest.raises(VoxflowError, match=r"nowhere\.lst: speaker list not found"):
        read_speaker_list(tmp_path / "nowhere.lst")
    bad = tmp_path / "enroll.lst"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(VoxflowError, match=r"enroll\.lst: cannot read enrolment list"):
        read_enroll_list(bad)


def test_speaker_and_enrolment_lists(tmp_path):
    spk = tmp_path / "dev.lst"
    spk.write_text("id00000\n\nid00002\n")
    assert read_speaker_list(spk) == {"id00000": 1, "id00002": 3}
    spk.write_text("id00000\nid00000\n")
    with pytest.raises(VoxflowError, match=r"dev\.lst:2: 'id00000' repeats line 1"):
        read_speaker_list(spk)
    spk.write_text("\n")
    with pytest.raises(VoxflowError, match="speaker list is empty"):
        read_speaker_list(spk)
    enroll = tmp_path / "enroll.lst"
    enroll.write_text("id00800-enroll enroll/id00800-enroll.wav\nid00801-enroll enroll/id00801-enroll.flac\n")
    assert read_enroll_list(enroll) == {"id00800-enroll": "enroll/id00800-enroll", "id00801-enroll": "enroll/id00801-enroll"}
