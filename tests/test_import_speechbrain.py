"""`voxflow model import --from speechbrain`: parity with speechbrain 1.1.2 (a test dependency), errors.

The reference is SpeechBrain's own modules run as EncoderClassifier.encode_batch(normalize=True) runs them:
Fbank -> InputNormalization(sentence) -> ECAPA_TDNN -> InputNormalization(global) with mean_var_norm_emb.ckpt;
``test_encoder_classifier_gives_the_same`` checks that composition against EncoderClassifier itself.
The model directory is what spkrec-ecapa-voxceleb holds (hyperparams.yaml shaped like its own,
embedding_model.ckpt, mean_var_norm_emb.ckpt written by InputNormalization._save), with random weights, random
batch-norm statistics and embedding statistics accumulated by InputNormalization from random embeddings. Audio:
tests/data/speechbrain/speech.wav (recorded speech, see the README there).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch

pytest.importorskip("speechbrain")
from speechbrain.lobes.features import Fbank  # noqa: E402
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN  # noqa: E402
from speechbrain.processing.features import InputNormalization  # noqa: E402

from test_import_wespeaker import run_cli  # noqa: E402  (pytest puts tests/ on sys.path)
from voxflow import load_model  # noqa: E402
from voxflow.audio.features import extract_features, num_frames, validate_features_cfg  # noqa: E402
from voxflow.data.manifests import read_embeddings  # noqa: E402
from voxflow.embed.extract import Embedder  # noqa: E402
from voxflow.errors import VoxflowError  # noqa: E402
from voxflow.pretrained import import_model  # noqa: E402
from voxflow.pretrained.speechbrain import load_source  # noqa: E402
from voxflow.train.export import load_torchscript  # noqa: E402
from voxflow.train.network import Classifier, build_classifier, load_network  # noqa: E402

WAV = Path(__file__).parent / "data" / "speechbrain" / "speech.wav"

# spkrec-ecapa-voxceleb's hyperparams.yaml, sizes as placeholders; voxflow reads compute_features,
# mean_var_norm, embedding_model and mean_var_norm_emb and ignores the rest.
SPKREC = """\
# Model: ECAPA big for Speaker verification
n_mels: {n_mels}
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
out_n_neurons: 7205

compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>{fbank_extra}

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: {input_std}

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: {channels}
    kernel_sizes: {kernel_sizes}
    dilations: {dilations}
    attention_channels: {attention}
    lin_neurons: {lin}{ecapa_extra}

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: {lin}
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: {emb_std}

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
"""

VARIANTS = {
    # spkrec-ecapa-voxceleb's settings with small channels
    "spkrec_small": dict(n_mels=80, fbank_extra="", input_std=False, emb_std=False, channels=[64, 64, 64, 64, 192],
                         kernel_sizes=[5, 3, 3, 3, 1], dilations=[1, 2, 3, 4, 1], attention=16, lin=24,
                         ecapa_extra="\n    se_channels: 16"),
    # the other options voxflow reproduces: Fbank sizes, both std_norm, scale 4, no global context, two blocks
    "options": dict(n_mels=40, fbank_extra="\n    n_fft: 512\n    f_min: 20\n    f_max: 7600\n    win_length: 32",
                    input_std=True, emb_std=True, channels=[48, 48, 48, 96], kernel_sizes=[3, 5, 3, 1],
                    dilations=[1, 2, 3, 1], attention=8, lin=16,
                    ecapa_extra="\n    res2net_scale: 4\n    se_channels: 8\n    global_context: False"),
    # spkrec-ecapa-voxceleb's own sizes (C 1024, aggregation 3072, 192-d)
    "spkrec": dict(n_mels=80, fbank_extra="", input_std=False, emb_std=False,
                   channels=[1024, 1024, 1024, 1024, 3072], kernel_sizes=[5, 3, 3, 3, 1],
                   dilations=[1, 2, 3, 4, 1], attention=128, lin=192, ecapa_extra=""),
}


def _parse_fbank(extra: str) -> dict:
    pairs = [line.strip().split(": ") for line in extra.splitlines() if line.strip()]
    return {k: float(v) if "." in v else int(v) for k, v in pairs}


def write_layout(directory: Path, v: dict, seed: int = 0) -> dict:
    """A spkrec-style model directory with random weights; SpeechBrain's modules (eval mode) that read it."""
    torch.manual_seed(seed)
    ecapa_kwargs = {line.split(": ")[0].strip(): (line.split(": ")[1] == "True") if "context" in line
                    else int(line.split(": ")[1]) for line in v["ecapa_extra"].splitlines() if line.strip()}
    model = ECAPA_TDNN(v["n_mels"], channels=v["channels"], kernel_sizes=v["kernel_sizes"],
                       dilations=v["dilations"], attention_channels=v["attention"], lin_neurons=v["lin"],
                       **ecapa_kwargs)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                n = module.num_features
                module.weight.copy_(1.0 + 0.2 * torch.randn(n))
                module.bias.copy_(0.1 * torch.randn(n))
                module.running_mean.copy_(0.3 * torch.randn(n))
                module.running_var.copy_(torch.empty(n).uniform_(0.5, 2.0))
                module.num_batches_tracked.fill_(1000)
    emb_norm = InputNormalization(norm_type="global", std_norm=v["emb_std"])
    emb_norm.train()
    for _ in range(3):  # statistics as training accumulates them
        emb_norm(2.0 + 0.5 * torch.randn(8, 1, v["lin"]), torch.ones(8))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hyperparams.yaml").write_text(SPKREC.format(**v))
    torch.save(model.state_dict(), directory / "embedding_model.ckpt")
    emb_norm._save(directory / "mean_var_norm_emb.ckpt")
    fbank = Fbank(n_mels=v["n_mels"], **_parse_fbank(v["fbank_extra"]))
    input_norm = InputNormalization(norm_type="sentence", std_norm=v["input_std"])
    return {"fbank": fbank.eval(), "input_norm": input_norm.eval(), "ecapa": model.eval(),
            "emb_norm": emb_norm.eval()}


def speechbrain_features(sb: dict, wav: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return sb["input_norm"](sb["fbank"](torch.from_numpy(wav)[None]), torch.ones(1))


def speechbrain_embedding(sb: dict, feats: torch.Tensor) -> np.ndarray:
    """encode_batch(normalize=True) from features: (batch, dim)."""
    with torch.no_grad():
        lengths = torch.ones(feats.shape[0])
        return sb["emb_norm"](sb["ecapa"](feats, lengths), lengths)[:, 0].numpy()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One torch thread: on a shared 2-core machine more only lose to contention (10x slower measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def wav():
    data, sr = sf.read(WAV, dtype="float32")
    assert sr == 16000 and data.ndim == 1
    return data


@pytest.fixture(scope="module", params=["spkrec_small", "options"])
def imported(request, tmp_path_factory):
    """(variant, SpeechBrain's modules, voxflow model directory, meta): spkrec_small imported by
    `voxflow model import`, options by the library call."""
    root = tmp_path_factory.mktemp(request.param)
    sb = write_layout(root / "sb", VARIANTS[request.param])
    if request.param == "spkrec_small":
        status, stdout, stderr = run_cli("model", "import", "--from", "speechbrain", root / "sb", "--out", root / "out")
        assert status == 0 and "24-d embeddings" in stdout, stderr
        meta = json.loads((root / "out" / "meta.json").read_text())
    else:
        meta = import_model("speechbrain", root / "sb", root / "out")
    return request.param, sb, root / "out", meta


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_features_match_speechbrain(imported, wav):
    name, sb, out, meta = imported
    ref = speechbrain_features(sb, wav)[0].numpy()
    ours = extract_features(wav, 16000, meta["data_cfg"]["features"]).numpy()
    assert ours.shape == ref.shape == (1 + len(wav) // 160, VARIANTS[name]["n_mels"])
    assert np.abs(ours - ref).max() <= 1e-4  # measured 0.0 (spkrec settings), 2.4e-7 (options)


def test_mel_db_config_checks():
    assert validate_features_cfg({"kind": "mel_db"})["top_db"] == 80.0
    for cfg, message in [({"kind": "fbank", "top_db": 60.0}, "top_db: kind mel_db only"),
                         ({"kind": "mel_power", "n_fft": 512}, "n_fft: kind mel_db only"),
                         ({"kind": "mel_db", "f_min_hz": 4000.0, "f_max_hz": 3000.0}, "f_max_hz: null"),
                         ({"kind": "mel_db", "n_fft": 0}, "n_fft: a positive integer"),
                         ({"kind": "mel_db", "vad": True}, "vad: the energy VAD"),
                         ({"kind": "mel_db", "top_db": -1}, "top_db: a positive number")]:
        with pytest.raises(VoxflowError, match=message):
            validate_features_cfg(cfg)
    with pytest.raises(VoxflowError, match="n_fft 256 is shorter than the 400-sample window"):
        extract_features(np.zeros(16000, np.float32), 16000, {"kind": "mel_db", "n_fft": 256})
    silence = extract_features(np.zeros(1600, np.float32), 16000, {"kind": "mel_db", "cmn": "none"})
    assert silence.shape == (11, 80) and torch.all(silence == -100.0)  # 10 log10 of the 1e-10 floor


def test_embeddings_from_speechbrain_features(imported, wav):
    name, sb, out, meta = imported
    feats = speechbrain_features(sb, wav)
    feats = torch.cat([feats, feats[:, :, :].flip(1), torch.randn_like(feats)])  # more rows, other inputs
    expected = speechbrain_embedding(sb, feats)
    rebuilt, model_cfg, _ = load_network(out / "model.pt")  # the registry rebuilds it (fine-tuning, the DAG)
    ts, _ = load_torchscript(out / "model.ts")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        for got in (rebuilt.eval()(feats).numpy(), ts(feats).numpy(),
                    session.run(None, {"feats": feats.numpy()})[0]):
            assert np.abs(got - expected).max() <= 1e-4  # measured <= 1.5e-6 (embeddings of norm 10-16)
    assert model_cfg == meta["model_cfg"] and model_cfg["output_norm"]
    assert meta["embed_dim"] == VARIANTS[name]["lin"] and meta["source"].startswith("speechbrain:")


class _Onnx(torch.nn.Module):
    """model.onnx behind the module interface Embedder expects."""

    def __init__(self, path):
        super().__init__()
        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forward(self, feats):
        return torch.from_numpy(self.session.run(None, {"feats": feats.numpy()})[0])


def test_embedding_from_wav_through_voxflow(imported, wav):
    _, sb, out, meta = imported
    expected = speechbrain_embedding(sb, speechbrain_features(sb, wav))[0]
    ts, ts_meta = load_torchscript(out / "model.ts")
    for model in (ts, _Onnx(out / "model.onnx")):
        got = Embedder(model, ts_meta).embed_waveforms([wav], 16000)[0]
        assert cosine(got, expected) >= 0.9999 and np.abs(got - expected).max() <= 1e-4, type(model)
    api = load_model(out).embed(WAV, mode="full")  # voxflow.load_model on the file, as `voxflow embed` reads it
    assert cosine(api, expected) >= 0.9999


def test_encoder_classifier_gives_the_same(imported, tmp_path, wav):
    """SpeechBrain's own inference class on the model directory (HyperPyYAML executed, weights loaded by its
    Pretrainer) vs the imported model from the wav."""
    from speechbrain.inference.speaker import EncoderClassifier

    _, sb, out, _ = imported
    source = out.parent / "sb"
    encoder = EncoderClassifier.from_hparams(source=str(source), savedir=str(tmp_path / "sb"),
                                             overrides={"pretrained_path": str(source)}, run_opts={"device": "cpu"})
    with torch.no_grad():
        expected = encoder.encode_batch(torch.from_numpy(wav)[None], normalize=True)[0, 0].numpy()
    assert np.abs(expected - speechbrain_embedding(sb, speechbrain_features(sb, wav))[0]).max() == 0.0
    got = Embedder(*load_torchscript(out / "model.ts")).embed_waveforms([wav], 16000)[0]
    assert cosine(got, expected) >= 0.9999 and np.abs(got - expected).max() <= 1e-4  # measured 1.0, <= 1e-6


def test_voxflow_embed_command(imported, tmp_path, wav):
    _, sb, out, _ = imported
    status, _, stderr = run_cli("embed", out / "model.ts", WAV, "--mode", "full", "--out", tmp_path / "e.parquet")
    assert status == 0, stderr
    _, matrix, _ = read_embeddings(tmp_path / "e.parquet")
    assert cosine(matrix[0], speechbrain_embedding(sb, speechbrain_features(sb, wav))[0]) >= 0.9999


def test_spkrec_sizes(tmp_path, wav):
    """spkrec-ecapa-voxceleb's own sizes (20.8 M parameters), on 2 s of the speech: the same parity from the wav
    (the mapped network, without the export the small models test)."""
    sb = write_layout(tmp_path / "sb", VARIANTS["spkrec"])
    model, model_cfg, data_cfg, _ = load_source(tmp_path / "sb")
    assert model_cfg["channels"] == 1024 and model_cfg["mfa_channels"] == 3072
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in sb["ecapa"].parameters())
    segment = wav[:32000]
    expected = speechbrain_embedding(sb, speechbrain_features(sb, segment))[0]
    with torch.no_grad():
        got = model(extract_features(segment, 16000, data_cfg["features"])[None])[0].numpy()
    assert cosine(got, expected) >= 0.9999 and np.abs(got - expected).max() <= 1e-4


def test_trainable_like_any_model(imported):
    model, _, data_cfg = load_network(imported[2] / "model.pt")
    dim = data_cfg["features"]["num_mel_bins"]
    net = Classifier(model.train(), build_classifier({"name": "aamsoftmax"}, model.embed_dim, 3))
    loss = torch.nn.functional.cross_entropy(net(torch.randn(3, 60, dim), torch.tensor([0, 1, 2])),
                                             torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(model.stem.conv.weight.grad).all() and model.stem.conv.weight.grad.abs().sum() > 0
    assert not model.output_norm.mean.requires_grad  # SpeechBrain's embedding statistics stay fixed


def test_without_embedding_statistics(tmp_path, wav):
    """No mean_var_norm_emb.ckpt: the model gives ECAPA_TDNN's output as it is (encode_batch(normalize=False))."""
    sb = write_layout(tmp_path / "sb", VARIANTS["spkrec_small"])
    (tmp_path / "sb" / "mean_var_norm_emb.ckpt").unlink()
    model, model_cfg, _, extra = load_source(tmp_path / "sb")
    assert model_cfg["output_norm"] is False and extra["speechbrain"]["embedding_norm"] == ""
    feats = speechbrain_features(sb, wav)
    with torch.no_grad():
        assert np.abs(model(feats).numpy() - sb["ecapa"](feats)[:, 0].numpy()).max() <= 1e-4


@pytest.fixture
def layout(tmp_path):
    write_layout(tmp_path / "sb", VARIANTS["spkrec_small"])
    return tmp_path / "sb"


def _edit(layout: Path, old: str, new: str) -> None:
    text = (layout / "hyperparams.yaml").read_text()
    assert old in text
    (layout / "hyperparams.yaml").write_text(text.replace(old, new, 1))


def test_missing_and_misshaped_tensors(layout, tmp_path):
    state = torch.load(layout / "embedding_model.ckpt", weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "blocks.2.se_block.conv1.conv.bias"},
               layout / "embedding_model.ckpt")
    with pytest.raises(VoxflowError, match=r"missing \['blocks.2.se_block.conv1.conv.bias' \(voxflow "
                                           r"'blocks.1.body.3.reduce.bias'\)\]"):
        import_model("speechbrain", layout, tmp_path / "out")
    state["fc.conv.weight"] = state["fc.conv.weight"][:20]
    torch.save(state, layout / "embedding_model.ckpt")
    with pytest.raises(VoxflowError, match=r"'fc.conv.weight' has shape \(20, 384, 1\).*\(24, 384, 1\)"):
        import_model("speechbrain", layout, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_references_are_followed(layout):
    """!ref <key> to top-level and dotted keys, also to a !name: tag, as HyperPyYAML resolves them."""
    _edit(layout, "    lin_neurons: 24", "    lin_neurons: !ref <sizes.embedding>\n    activation: !ref <act>")
    _edit(layout, "n_mels: 80\n", "n_mels: 80\nsizes:\n    embedding: 24\nact: !name:torch.nn.ReLU\n")
    _, model_cfg, data_cfg, _ = load_source(layout)
    assert model_cfg["embed_dim"] == 24 and data_cfg["features"]["num_mel_bins"] == 80
    _edit(layout, "    embedding: 24", "    embedding: !ref <sizes.embedding>")
    with pytest.raises(VoxflowError, match="too deep"):
        load_source(layout)


def test_embedding_statistics_of_older_speechbrain(layout):
    """SpeechBrain < 1.0 saved per-speaker dictionaries beside the global statistics (spkrec's file is of that age)."""
    mean = torch.linspace(-1.0, 1.0, 24)
    torch.save({"count": 7, "glob_mean": mean, "glob_std": torch.full((24,), 3.0), "spk_dict_mean": {},
                "spk_dict_std": {}, "spk_dict_count": {}}, layout / "mean_var_norm_emb.ckpt")
    model, model_cfg, _, _ = load_source(layout)
    assert model_cfg["output_norm"] and torch.equal(model.output_norm.mean, mean)
    assert torch.equal(model.output_norm.std, torch.ones(24))  # std_norm False: the stored std is not used


def test_bad_embedding_statistics(layout, tmp_path):
    torch.save({"count": 3, "glob_mean": torch.zeros(1, 23), "glob_std": torch.ones(1, 23)},
               layout / "mean_var_norm_emb.ckpt")
    with pytest.raises(VoxflowError, match=r"mean_var_norm_emb.ckpt: 'glob_mean' has shape \(1, 23\).*\(24,\)"):
        import_model("speechbrain", layout, tmp_path / "out")


@pytest.mark.parametrize("old,new,message", [
    ("    n_mels: !ref <n_mels>", "    n_mels: !ref <n_mels>\n    deltas: True",
     r"compute_features.deltas: True cannot be reproduced"),
    ("    n_mels: !ref <n_mels>", "    n_mels: !ref <n_mels>\n    filter_shape: gaussian",
     r"compute_features.filter_shape: 'gaussian' cannot be reproduced"),
    ("norm_type: sentence", "norm_type: global", r"mean_var_norm.norm_type: 'global' cannot be reproduced"),
    ("    lin_neurons: 24", "    lin_neurons: 24\n    activation: !name:torch.nn.LeakyReLU",
     r"embedding_model.activation: 'torch.nn.LeakyReLU' cannot be reproduced"),
    ("channels: [64, 64, 64, 64, 192]", "channels: [64, 32, 64, 64, 192]",
     r"embedding_model.channels: \[64, 32, 64, 64, 192\] cannot be reproduced"),
    ("    lin_neurons: 24", "    lin_neurons: 24\n    dropout: 0.1", r"embedding_model.dropout: 0.1"),
    ("    lin_neurons: 24", "    lin_neurons: 24\n    widths: 3", r"embedding_model: unknown argument\(s\) 'widths'"),
    ("    n_mels: !ref <n_mels>", "    n_mels: 40", r"n_mels 40 differs from embedding_model.input_size 80"),
    ("input_size: !ref <n_mels>", "input_size: !ref <n_mels> * 2", r"!ref '<n_mels> \* 2' is not supported"),
])
def test_unsupported_hyperparams(layout, tmp_path, old, new, message):
    _edit(layout, old, new)
    with pytest.raises(VoxflowError, match=message):
        import_model("speechbrain", layout, tmp_path / "out")


ECAPA, XVECTOR = "!new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN", "!new:speechbrain.lobes.models.Xvector.Xvector"


def test_unknown_architecture_lists_known_ones(layout, tmp_path):
    _edit(layout, ECAPA, XVECTOR)
    with pytest.raises(VoxflowError, match=r"embedding_model is !new:speechbrain.lobes.models.Xvector.Xvector.*"
                                           r"known: speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN"):
        import_model("speechbrain", layout, tmp_path / "out")
    _edit(layout, XVECTOR, ECAPA)
    _edit(layout, "!new:speechbrain.lobes.features.Fbank", "!new:speechbrain.lobes.features.MFCC")
    with pytest.raises(VoxflowError, match=r"compute_features is !new:speechbrain.lobes.features.MFCC.*known: "
                                           r"speechbrain.lobes.features.Fbank"):
        import_model("speechbrain", layout, tmp_path / "out")


def test_bad_layouts(layout, tmp_path):
    with pytest.raises(VoxflowError, match="installs no pretrained model"):
        import_model("speechbrain", None, tmp_path / "out")
    with pytest.raises(VoxflowError, match="is not a directory"):
        import_model("speechbrain", tmp_path / "nowhere", tmp_path / "out")
    (layout / "embedding_model.ckpt").rename(layout / "other.ckpt")
    with pytest.raises(VoxflowError, match="embedding_model.ckpt not found"):
        import_model("speechbrain", layout, tmp_path / "out")
    (layout / "other.ckpt").rename(layout / "embedding_model.ckpt")
    (layout / "hyperparams.yaml").write_text("embedding_model: [unclosed\n")
    with pytest.raises(VoxflowError, match="hyperparams.yaml is not valid YAML"):
        import_model("speechbrain", layout, tmp_path / "out")


def test_meta_records_the_source(imported):
    _, _, out, meta = imported
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk["speechbrain"]["embedding_norm"].endswith("mean_var_norm_emb.ckpt")
    assert on_disk["data_cfg"]["features"]["kind"] == "mel_db" and on_disk["data_cfg"]["features"]["cmn"] == "utterance"


def test_input_shorter_than_the_reflect_padding_is_named(imported, tmp_path, wav):
    """SpeechBrain's ECAPA pads every convolution by reflection, which fails inside torch for an input no longer
    than the widest padding (dilation x (kernel - 1) / 2 frames; 4 in spkrec, so 5 centred frames = 40 ms of
    audio). `voxflow embed` of a real file cut one frame short names the file, its length and the minimum; one
    frame more embeds."""
    name, _, out, _ = imported
    v = VARIANTS[name]
    min_frames = max(d * (k - 1) // 2 for k, d in zip(v["kernel_sizes"], v["dilations"])) + 1
    model, meta = load_torchscript(out / "model.ts")
    embedder = Embedder(model, meta)
    assert embedder.min_frames == min_frames
    min_ms = 1000 * embedder.min_duration_s()
    if name == "spkrec_small":
        assert min_ms == 40  # SpeechBrain's Fbank frames are centred: 4 shifts of 10 ms
    n = round(16 * min_ms) - 160  # samples of one frame fewer
    frames = num_frames(n, 16000, embedder.feat_cfg)  # options: 30 ms, under its 32 ms frame: 0
    assert frames == (min_frames - 1 if name == "spkrec_small" else 0)
    if frames:
        with pytest.raises(RuntimeError, match="Padding size should be less than the corresponding input dimension"):
            model(embedder.features(wav[:n], 16000)[None])  # what the check replaces
    short, enough = tmp_path / "short.wav", tmp_path / "enough.wav"
    sf.write(short, wav[:n], 16000)
    sf.write(enough, wav[:n + 160], 16000)
    status, _, stderr = run_cli("embed", out / "model.ts", short, "--mode", "full", "--out", tmp_path / "e.parquet")
    assert status == 1 and f"{short} (utterance " in stderr, stderr
    assert f"{1000 * n / 16000:.0f} ms of audio gives {frames} feature frame(s)" in stderr, stderr
    assert f"the model needs at least {min_frames} ({min_ms:.0f} ms)" in stderr, stderr
    status, _, stderr = run_cli("embed", out / "model.ts", enough, "--mode", "full", "--out", tmp_path / "e.parquet")
    assert status == 0, stderr
