"""SpeechBrain ECAPA layout (spkrec-ecapa-voxceleb): read and checked, then refused with the reasons.

voxflow's ecapa_tdnn lacks SpeechBrain's reflect padding, the batch norm of its aggregation and its attention
TDNN, and its Fbank front-end (see voxflow.pretrained.speechbrain.GAPS), so there is no parity to test yet: the
import must stop with an error that says so rather than write a model that differs. speechbrain (a test
dependency) provides the real ECAPA_TDNN whose random-weight state dict the layout holds.
"""

import pytest
import torch

sb_ecapa = pytest.importorskip("speechbrain.lobes.models.ECAPA_TDNN")

from voxflow.errors import VoxflowError  # noqa: E402
from voxflow.pretrained import import_model  # noqa: E402
from voxflow.pretrained.speechbrain import read_layout  # noqa: E402

HYPERPARAMS = """\
n_mels: 80
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [64, 64, 64, 64, 192]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    lin_neurons: 24
"""


@pytest.fixture
def layout(tmp_path):
    torch.manual_seed(0)
    model = sb_ecapa.ECAPA_TDNN(80, channels=[64, 64, 64, 64, 192], attention_channels=16, lin_neurons=24)
    (tmp_path / "hyperparams.yaml").write_text(HYPERPARAMS)
    torch.save(model.state_dict(), tmp_path / "embedding_model.ckpt")
    return tmp_path


def test_layout_is_read_then_refused_with_reasons(layout, tmp_path):
    got = read_layout(layout)
    assert got["hyperparams"]["embedding_model"]["args"]["channels"][-1] == 192 and got["emb_norm"] is None
    with pytest.raises(VoxflowError, match=r"fc \(24, 384, 1\).*Fbank.*reflection.*batch norm"):
        import_model("speechbrain", layout, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_layouts(layout, tmp_path):
    with pytest.raises(VoxflowError, match="installs no pretrained model"):
        import_model("speechbrain", None, tmp_path / "out")
    (layout / "embedding_model.ckpt").rename(layout / "other.ckpt")
    with pytest.raises(VoxflowError, match="embedding_model.ckpt not found"):
        import_model("speechbrain", layout, tmp_path / "out")
    torch.save({"linear.weight": torch.zeros(2, 2)}, layout / "embedding_model.ckpt")
    with pytest.raises(VoxflowError, match="not an ECAPA_TDNN state dict"):
        import_model("speechbrain", layout, tmp_path / "out")
