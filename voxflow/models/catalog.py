"""The named models (``FACTORIES``: name -> factory taking feat_dim, embed_dim, **options), with the papers'
sizes as defaults; :mod:`voxflow.models.registry` builds them by name."""

from typing import Optional, Sequence

from voxflow.models import ge2e, lstm
from voxflow.models.ecapa import ECAPATDNN
from voxflow.models.resnet import ResNet
from voxflow.models.xvector import XVector


def xvector(
    feat_dim: int,
    embed_dim: int = 512,
    channels: int = 512,
    stats_channels: int = 1500,
    pooling: str = "TSTP",
    pooling_kwargs: Optional[dict] = None,
    two_embedding_layers: bool = False,
) -> XVector:
    """Margin Matters Table 1 x-vector (30 MFCC in, 512-d segment6 embedding; 4.49 M parameters)."""
    return XVector(feat_dim, embed_dim, channels, stats_channels, pooling, pooling_kwargs, two_embedding_layers)


def _resnet(blocks, bottleneck):
    def factory(
        feat_dim: int,
        embed_dim: int = 256,
        base_channels: int = 32,
        pooling: str = "TSTP",
        pooling_kwargs: Optional[dict] = None,
        two_embedding_layers: bool = False,
    ) -> ResNet:
        return ResNet(feat_dim, embed_dim, blocks, bottleneck, base_channels, pooling, pooling_kwargs,
                      two_embedding_layers)

    return factory


def ecapa_tdnn(
    feat_dim: int,
    embed_dim: int = 192,
    channels: int = 512,
    mfa_channels: int = 1536,
    pooling: str = "ASTP",
    pooling_kwargs: Optional[dict] = None,
    embedding_norm: bool = True,
    scale: int = 8,
    kernel_sizes: Sequence[int] = (5, 3, 3, 3, 1),
    dilations: Sequence[int] = (1, 2, 3, 4, 1),
    se_channels: int = 128,
    padding_mode: str = "zeros",
    aggregate_norm: bool = False,
    output_norm: bool = False,
) -> ECAPATDNN:
    """ECAPA-TDNN; channels=512 (6.19 M parameters) or 1024 (14.66 M); the other options describe SpeechBrain's
    variant (see voxflow.models.ecapa)."""
    return ECAPATDNN(feat_dim, embed_dim, channels, scale, mfa_channels, pooling, pooling_kwargs, embedding_norm,
                     kernel_sizes, dilations, se_channels, padding_mode, aggregate_norm, output_norm)


FACTORIES = {
    "xvector": xvector,
    "lstm_netvlad": lstm.lstm_netvlad,
    "lstm_avg": lstm.lstm_avg,
    "ge2e_lstm": ge2e.ge2e_lstm,
    "resnet34": _resnet([3, 4, 6, 3], bottleneck=False),  # 6.63 M at 80 fbank
    "resnet221": _resnet([6, 16, 48, 3], bottleneck=True),  # 23.79 M
    "resnet293": _resnet([10, 20, 64, 3], bottleneck=True),  # 28.63 M
    "ecapa_tdnn": ecapa_tdnn,
}
