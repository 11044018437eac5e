import pytest
import torch

from colorize_cli.engine.colorizer import working_shape
from colorize_cli.models import create_discriminator, create_model, get_spec, list_models


def test_registry_lists_models_and_unknown_name_says_what_exists():
    names = list_models()
    assert {"unet-sn", "unet-bn"} <= set(names)
    with pytest.raises(KeyError, match="unet-sn"):
        create_model("no-such-model")


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("grid", [(1, 1), (3, 5), (2, 7)])
def test_generator_maps_l_to_ab_of_the_same_size(name, grid):
    spec = get_spec(name)
    hw = (spec.fixed_size,) * 2 if spec.fixed_size else tuple(g * spec.size_multiple for g in grid)
    model = create_model(name, width=4).eval()
    out = model(torch.randn(2, 1, *hw))
    assert out.shape == (2, 2, *hw)
    assert out.abs().max() <= 1.0  # tanh output: normalised ab


@pytest.mark.parametrize("hw", [(17, 23), (1, 1), (333, 500), (5000, 31)])
def test_working_shape_is_a_multiple_and_keeps_aspect(hw):
    h, w = working_shape(*hw, size=256, multiple=16)
    assert h % 16 == 0 and w % 16 == 0
    assert max(h, w) <= max(256, 16) + 8
    if min(hw) >= 64:
        assert abs(h / w - hw[0] / hw[1]) < 0.1 * hw[0] / hw[1]


def test_unet_variants_differ_only_in_the_discriminator_norm():
    sn, bn = get_spec("unet-sn"), get_spec("unet-bn")
    assert sn.builder is bn.builder and sn.options == bn.options
    assert sn.recipe.discriminator_options == {"norm": "spectral"}
    assert bn.recipe.discriminator_options == {"norm": "batch"}
    assert sn.recipe.l1_weight == 100.0 and sn.recipe.gan_loss == "bce"


@pytest.mark.parametrize("norm", ["spectral", "batch"])
def test_pixel_discriminator_judges_each_pixel_on_its_own(norm):
    d = create_discriminator("pixel", norm=norm).eval()
    l_norm, ab = torch.randn(2, 1, 9, 7), torch.randn(2, 2, 9, 7)
    scores = d(l_norm, ab)
    assert scores.shape == (2, 1, 9, 7) and scores.abs().max() <= 1
    # changing one pixel changes only that pixel's score: a 1x1 receptive field
    ab2 = ab.clone()
    ab2[0, :, 4, 3] += 1
    changed = (d(l_norm, ab2) != scores).nonzero().tolist()
    assert changed == [[0, 0, 4, 3]]
    names = [type(m).__name__ for m in d.net]
    assert names[:2] == ["Linear", "LeakyReLU"] and names[-1] == "Tanh"


def test_pixel_discriminator_samples_pixels_in_training():
    d = create_discriminator("pixel", sample_pixels=100).train()
    scores = d(torch.randn(4, 1, 32, 32), torch.randn(4, 2, 32, 32))
    assert scores.numel() == 100
