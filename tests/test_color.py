import warnings

import numpy as np
import pytest
import torch
from skimage import color, data

from colorize_cli import color as np_color
from colorize_cli.color import denormalize_ab, denormalize_l, normalize_ab, normalize_l
from colorize_cli.models.colorspace import lab_to_rgb, model_output_to_rgb, rgb_to_lab, rgb_to_model_input

# the same conversions twice: NumPy for colorizing (colorize_cli.color), torch for training
# (colorize_cli.models.colorspace, differentiable); both are held to skimage and to each other


def _to_torch(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1)))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-8), (torch.float32, 1e-4)])
def test_rgb_to_lab_matches_skimage_on_random_pixels(dtype, tol):
    rgb = np.random.default_rng(0).random((33, 41, 3))
    ours = rgb_to_lab(_to_torch(rgb).to(dtype)).double().numpy().transpose(1, 2, 0)
    assert np.abs(ours - color.rgb2lab(rgb)).max() <= tol


def test_rgb_to_lab_matches_skimage_on_a_real_photo():
    rgb = data.astronaut().astype(np.float64) / 255
    ours = rgb_to_lab(_to_torch(rgb)).numpy().transpose(1, 2, 0)
    assert np.abs(ours - color.rgb2lab(rgb)).max() <= 1e-4


def test_lab_to_rgb_matches_skimage_including_out_of_gamut():
    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (20, 20)), rng.uniform(-110, 110, (20, 20)),
                    rng.uniform(-110, 110, (20, 20))], axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the negative Z values it clips
        ref = color.lab2rgb(lab)
    ours = lab_to_rgb(_to_torch(lab)).numpy().transpose(1, 2, 0)
    assert np.abs(ours - ref).max() <= 1e-4


def test_round_trip_and_batching():
    rgb = torch.rand(4, 3, 16, 12, dtype=torch.float64)
    back = lab_to_rgb(rgb_to_lab(rgb))
    assert back.shape == rgb.shape
    assert (back - rgb).abs().max() < 1e-10
    # a batch gives the same as its images one by one
    single = torch.stack([rgb_to_lab(x) for x in rgb])
    assert torch.allclose(single, rgb_to_lab(rgb))


def test_conversions_are_differentiable_with_finite_gradients():
    rgb = torch.rand(2, 3, 8, 8, requires_grad=True)
    rgb.data[0, :, 0, 0] = 0.0  # black pixels sit on the cbrt's steep part
    lab = rgb_to_lab(rgb)
    lab_to_rgb(lab, clip=False).sum().backward()
    assert torch.isfinite(rgb.grad).all()


def test_gray_to_l_equals_lab_of_neutral_gray():
    g = np.linspace(0, 1, 256)
    neutral = np.broadcast_to(g, (3, 1, 256))
    assert np.allclose(np_color.gray_to_l(g), np_color.rgb_to_lab(neutral)[0, 0], atol=1e-9)
    assert np.allclose(np_color.gray_to_l(g), rgb_to_lab(torch.from_numpy(np.ascontiguousarray(neutral)))[0, 0])


def test_numpy_conversions_match_skimage_and_the_torch_ones():
    rgb = np.random.default_rng(3).random((3, 33, 41))
    lab = np_color.rgb_to_lab(rgb)
    assert np.abs(lab - color.rgb2lab(rgb.transpose(1, 2, 0)).transpose(2, 0, 1)).max() <= 1e-8
    assert np.abs(lab - rgb_to_lab(torch.from_numpy(rgb)).numpy()).max() <= 1e-8
    rng = np.random.default_rng(1)
    wild = np.stack([rng.uniform(0, 100, (20, 20)), rng.uniform(-110, 110, (20, 20)), rng.uniform(-110, 110, (20, 20))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the negative Z values it clips
        ref = color.lab2rgb(wild.transpose(1, 2, 0)).transpose(2, 0, 1)
    assert np.abs(np_color.lab_to_rgb(wild) - ref).max() <= 1e-6
    assert np.abs(np_color.lab_to_rgb(wild) - lab_to_rgb(torch.from_numpy(wild)).numpy()).max() <= 1e-8


def test_integer_pixels_round_trip_through_lab_exactly():
    """pixels -> L (tables) and the photo's own ab -> pixels (tables): every 8-bit colour comes back."""
    levels = np.arange(0, 256, 5, dtype=np.uint8)
    rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)
    lum = np_color.pixels_to_l(rgb, 255)
    ab = np_color.rgb_to_lab(rgb.transpose(2, 0, 1) / 255)[1:].astype(np.float32)
    back = np_color.lab_to_pixels(lum, ab, 255)
    assert np.abs(back.astype(int) - rgb).max() <= 1 and (back != rgb).mean() < 1e-3


def test_normalisation_ranges_and_inverses():
    lum = torch.tensor([0.0, 50.0, 100.0])
    assert torch.allclose(normalize_l(lum), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(denormalize_l(normalize_l(lum)), lum)
    ab = torch.tensor([-110.0, 0.0, 110.0])
    assert torch.allclose(normalize_ab(ab), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(denormalize_ab(normalize_ab(ab)), ab)
    rgb = torch.rand(1, 3, 5, 5, dtype=torch.float64)
    l_norm, ab_norm = rgb_to_model_input(rgb)
    assert torch.allclose(model_output_to_rgb(l_norm, ab_norm), rgb, atol=1e-9)
