"""The ``Colorizer``: full-resolution luminance kept, chroma predicted at a working size.

    photo ─► RGB/gray resized to the working size ─► L ─► network ─► ab (small) ─┐
      └─► L at full resolution, strip by strip ◄── ab upsampled (bilinear) ◄─────┘ ─► Lab ─► RGB

The full-resolution half runs in horizontal strips of about a megapixel, so a 100-megapixel scan
needs memory for its pixels, not for float copies of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from colorize_cli.color import denormalize_ab, gray_to_l, lab_to_pixels, normalize_l, pixels_to_l, rgb_to_lab
from colorize_cli.engine.backends import OnnxEngine, TorchEngine
from colorize_cli.engine.device import onnx_providers, torch_device
from colorize_cli.engine.export import cached_onnx
from colorize_cli.engine.hub import resolve
from colorize_cli.engine.weights import DEFAULT_MODEL, load_generator
from colorize_cli.errors import OptionError
from colorize_cli.io.images import Photo, photo_from_pil
from colorize_cli.models import get_spec
from colorize_cli.preprocess import equalize_histogram

# Working size when neither --size nor the weights' config ("working_size", chosen on validation
# photos for each trained model: docs/quality.md) says otherwise.
DEFAULT_WORKING_SIZE = 256
STRIP_PIXELS = 1 << 20


def working_shape(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(h, w) with the long side ``size`` (never upscaling), each side rounded to ``multiple``."""
    scale = min(1.0, size / max(height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


class Colorizer:
    """Colorize photos with one model; the photo's own luminance is kept, only chroma is predicted.

    >>> from colorize_cli import Colorizer
    >>> colorizer = Colorizer()                      # the bundled default model, on the CPU
    >>> colour = colorizer.colorize(Image.open("grandma.jpg"))   # a PIL image in, a PIL image out

    Args:
        model: a name from weights.toml, ``default``, a path to exported ``.safetensors`` weights, an
            ``hf://OWNER/REPO`` URI, or a ``.onnx`` file from ``colorize export`` (which implies
            ``backend="onnx"``).
        device: ``cpu``, ``cuda[:N]`` or ``auto``.
        size: working size (long side in pixels); None = the default for the model.
        half: fp16 on a GPU.
        backend: ``torch`` (eager) or ``onnx`` (ONNX Runtime; weights are exported once into the
            cache, see :func:`colorize_cli.engine.export.cached_onnx`).
    """

    def __init__(self, model: str = "default", device: str = "cpu", size: int | None = None,
                 half: bool = False, backend: str = "torch"):
        name = DEFAULT_MODEL if model == "default" else model
        if str(name).endswith(".onnx"):
            backend = "onnx"
        if backend == "onnx":
            if half:
                raise OptionError("{half} is for the torch backend; for ONNX Runtime, export the model in "
                                  "float16 ('colorize export --fp16')")
            self._init_onnx(name, device)
        elif backend == "torch":
            self.device = torch_device(device)
            self.weights_path = resolve(name)
            net, self.config = load_generator(self.weights_path, self.device)
            self.engine = TorchEngine(net, self.device, half=half)
            spec = get_spec(self.config["arch"])
            self.fixed_size, self.multiple = spec.fixed_size, spec.size_multiple
        else:
            raise OptionError(f"{{backend}} {backend}: use torch or onnx")
        self.size = size or self.fixed_size or self.config.get("working_size") or DEFAULT_WORKING_SIZE

    def _init_onnx(self, name: str, device: str) -> None:
        """ONNX Runtime engine on a ``.onnx`` file, or on the cached export of weights; the size rule
        and config come from the file's metadata."""

        self.device = torch.device("cpu")  # the engine takes and returns CPU tensors
        self.weights_path = Path(name) if str(name).endswith(".onnx") else cached_onnx(resolve(name))
        self.engine = OnnxEngine(self.weights_path, providers=onnx_providers(device))
        meta = self.engine.metadata
        if "config" not in meta:
            raise ValueError(f"{self.weights_path}: no colorize-cli metadata; make the file with 'colorize export'")
        self.config = json.loads(meta["config"])
        self.fixed_size, self.multiple = int(meta["fixed_size"] or 0) or None, int(meta["size_multiple"])

    def working_shape(self, photo: Photo) -> tuple[int, int]:
        """The (h, w) at which this model predicts the photo's chroma."""
        if self.fixed_size:
            return self.fixed_size, self.fixed_size
        return working_shape(*photo.size, self.size, self.multiple)

    def working_input(self, photo: Photo) -> torch.Tensor:
        """Normalised L ``(1, 1, h, w)`` of the photo resized (antialiased) to its working shape."""
        h, w = self.working_shape(photo)
        px = photo.pixels
        if px.dtype == np.uint16:
            px = (px >> 8).astype(np.uint8)  # the network does not need 16 bits of input
        small = np.asarray(Image.fromarray(px).resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0))
        t = torch.from_numpy(small.astype(np.float32) / 255)
        lum = gray_to_l(t)[None, None] if t.ndim == 2 else rgb_to_lab(t.permute(2, 0, 1)[None])[:, :1]
        l_norm = normalize_l(lum)
        # a model trained with --equalize expects equalised L (its weights' config says so)
        return equalize_histogram(l_norm) if self.config.get("equalize_l") else l_norm

    def predict(self, l_norm: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised L batch ``(N, 1, h, w)`` -> ab in Lab units ``(N, 2, h, w)``.

        ``z`` (N, latent_dim): latent codes for a model that has them (``vae``; torch backend), e.g.
        from :meth:`sample_latents`; None gives the model's default colorization.
        """
        if z is None:
            return denormalize_ab(self.engine(l_norm))
        net = self._latent_net()
        with torch.no_grad():
            out = net(l_norm.to(self.device, self.engine.dtype), z.to(self.device, self.engine.dtype))
        return denormalize_ab(out.float().cpu())

    def sample_latents(self, n: int, seed: int) -> torch.Tensor:
        """``n`` latent codes from the model's prior, the same for the same ``seed``: code i gives
        colorization i of any photo."""
        return self._latent_net().sample_latents(n, torch.Generator().manual_seed(seed))

    def _latent_net(self) -> torch.nn.Module:
        net = getattr(self.engine, "net", None)
        if net is None:
            raise ValueError("sampling colorizations needs the torch backend (the ONNX graph decodes z = 0)")
        if not hasattr(net, "sample_latents"):
            raise ValueError(f"{self.config['arch']} has no latent code to sample; use a model such as vae")
        return net

    def finish(self, photo: Photo, ab_small: torch.Tensor) -> np.ndarray:
        """Combine the photo's full-resolution L with ``ab_small`` (2, h, w) upsampled; returns
        RGB (H, W, 3) in the photo's bit depth."""
        height, width = photo.size
        h = ab_small.shape[-2]
        # bilinear upsampling (align_corners=False), done separably: width once, height per strip
        ab_rows = F.interpolate(ab_small[None].float(), size=(h, width), mode="bilinear", align_corners=False)[0]
        maxval = photo.maxval
        pixels = torch.from_numpy(photo.pixels.astype(np.int32) if maxval > 255 else photo.pixels)
        out = np.empty((height, width, 3), dtype=photo.pixels.dtype)
        step = max(1, STRIP_PIXELS // width)
        for y0 in range(0, height, step):
            y1 = min(height, y0 + step)
            src = ((torch.arange(y0, y1, dtype=torch.float32) + 0.5) * (h / height) - 0.5).clamp(min=0)
            i0 = src.floor().long().clamp(max=h - 1)
            i1 = (i0 + 1).clamp(max=h - 1)
            t = (src - i0).view(1, -1, 1)
            ab = torch.lerp(ab_rows[:, i0], ab_rows[:, i1], t)
            lum = pixels_to_l(pixels[y0:y1], maxval)
            out[y0:y1] = lab_to_pixels(lum, ab, maxval).numpy()
        return out

    def colorize(self, image: Image.Image | np.ndarray | Photo) -> Image.Image | np.ndarray:
        """Colorize one image: a PIL image gives a PIL image (RGB, or RGBA where it had alpha; 16-bit
        gray gives 16-bit RGB as an array's bit depth allows); a NumPy array, gray ``(H, W)`` or RGB
        ``(H, W, 3)`` (``(H, W, 4)``: alpha kept), uint8 or uint16, gives an RGB array of the same
        dtype (RGBA for RGBA); a :class:`~colorize_cli.io.images.Photo` gives its RGB array."""
        if isinstance(image, Photo):
            return self._colorize_photo(image)
        if isinstance(image, Image.Image):
            photo = photo_from_pil(ImageOps.exif_transpose(image))  # upright, as the command line reads files
            rgb = self._colorize_photo(photo)
            if rgb.dtype == np.uint16:  # Pillow has no 16-bit RGB mode
                rgb = (rgb >> 8).astype(np.uint8)
            alpha = None if photo.alpha is None else (photo.alpha >> 8 if photo.alpha.dtype == np.uint16 else photo.alpha)
            out = Image.fromarray(rgb if alpha is None else np.dstack([rgb, alpha.astype(np.uint8)]),
                                  "RGB" if alpha is None else "RGBA")
            if photo.icc_profile:
                out.info["icc_profile"] = photo.icc_profile
            return out
        if isinstance(image, np.ndarray):
            return self._colorize_array(image)
        raise TypeError(f"colorize takes a PIL image, a NumPy array or a Photo, not {type(image).__name__}")

    def _colorize_array(self, array: np.ndarray) -> np.ndarray:
        if array.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"an image array must be uint8 or uint16, not {array.dtype} "
                             "(scale floats in 0..1 by 255 and convert)")
        channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else 0
        if channels not in (1, 3, 4) or min(array.shape[:2]) < 1:
            raise ValueError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), not {array.shape}")
        pixels = array if array.ndim == 2 else array[..., 0] if channels == 1 else array[..., :3]
        alpha = array[..., 3] if channels == 4 else None
        rgb = self._colorize_photo(Photo(np.require(pixels, requirements=['C', 'W']), alpha))  # torch wants writable
        return rgb if alpha is None else np.dstack([rgb, alpha])

    def _colorize_photo(self, photo: Photo) -> np.ndarray:
        return self.finish(photo, self.predict(self.working_input(photo))[0])


def load_model(model: str = "default", device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The torch network of ``model`` (a name, a path or an ``hf://`` URI, as for :class:`Colorizer`)
    in eval mode, and its config (architecture, options, training record)."""
    return load_generator(resolve(DEFAULT_MODEL if model == "default" else model), torch_device(device))
