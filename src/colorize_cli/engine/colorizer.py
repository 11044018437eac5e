"""The ``Colorizer``: full-resolution luminance kept, chroma predicted at a working size.

    photo ─► RGB/gray resized to the working size ─► L ─► network ─► ab (small) ─┐
      └─► L at full resolution, strip by strip ◄── ab upsampled (bilinear) ◄─────┘ ─► Lab ─► RGB

Everything but the network is NumPy, for both backends: with ONNX Runtime (the default on a CPU)
colorizing never imports torch. The full-resolution half runs in horizontal strips of about 32,000
pixels, whose float temporaries stay in the CPU's cache (2.2x faster on a 2 MP photo than strips of a
megapixel), and a 100-megapixel scan needs memory for its pixels, not for float copies of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from colorize_cli.color import (
    denormalize_ab,
    denormalize_l,
    lab_to_pixels,
    normalize_l,
    pixels_to_l,
)
from colorize_cli.engine.backends import OnnxEngine
from colorize_cli.engine.device import onnx_providers, parse_device
from colorize_cli.engine.hub import bundled_onnx, resolve
from colorize_cli.engine.weights import DEFAULT_MODEL
from colorize_cli.errors import OptionError, missing_torch
from colorize_cli.hints import REFERENCE_COLOURFULNESS, match_colourfulness, spread_points
from colorize_cli.io.images import Photo, photo_from_pil
from colorize_cli.preprocess import equalize_histogram
from colorize_cli.resample import bilinear_weights

# Working size when neither --size nor the weights' config ("working_size", chosen on validation
# photos for each trained model: docs/quality.md) says otherwise.
DEFAULT_WORKING_SIZE = 256
STRIP_PIXELS = 1 << 15  # rows of about this many pixels at a time: their temporaries stay in the CPU's cache
BACKENDS = ("auto", "onnx", "torch")


def working_shape(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(h, w) with the long side ``size`` (never upscaling), each side rounded to ``multiple``."""
    scale = min(1.0, size / max(height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def _torch_side(what: str):
    """The torch half of the engine, imported only when asked for (``backend="torch"``, an export);
    where torch is missing, the one-line error says that ``what`` needs it."""
    try:
        from colorize_cli.engine import export, networks
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise missing_torch(what) from None
    return networks, export


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
        backend: ``onnx`` (ONNX Runtime, on the ONNX graph bundled with the model, or exported once into
            the cache from other weights: that export needs torch), ``torch`` (eager; needs torch), or
            ``auto``: ONNX Runtime, except half precision or a CUDA device that ONNX Runtime has no
            provider for, which go to torch.
    """

    def __init__(self, model: str = "default", device: str = "cpu", size: int | None = None,
                 half: bool = False, backend: str = "auto"):
        name = DEFAULT_MODEL if model == "default" else str(model)
        if backend not in BACKENDS:
            raise OptionError(f"{{backend}} {backend}: use {', '.join(BACKENDS)}")
        if name.endswith(".onnx"):
            backend = "onnx"
        why_torch = "the torch backend"
        if backend == "auto":
            if half:
                backend, why_torch = "torch", "half precision (the torch backend)"
            elif parse_device(device).kind == "cuda" and not _onnx_has_cuda():
                backend = "torch"
                why_torch = f"device {device} without ONNX Runtime's CUDA provider (onnxruntime-gpu) runs on torch; it"
            else:
                backend = "onnx"
        self.backend = backend
        if backend == "onnx":
            if half:
                raise OptionError("{half} is for the torch backend; for ONNX Runtime, export the model in "
                                  "float16 ('colorize export --fp16')")
            self._init_onnx(name, device)
        else:
            networks, _ = _torch_side(why_torch)
            self.weights_path = resolve(name)
            self.engine, self.config, spec = networks.torch_engine(self.weights_path, device, half=half)
            self.device = str(self.engine.device)
            self.fixed_size, self.multiple = spec.fixed_size, spec.size_multiple
        self.size = size or self.fixed_size or self.config.get("working_size") or DEFAULT_WORKING_SIZE

    def _init_onnx(self, name: str, device: str) -> None:
        """ONNX Runtime engine on a ``.onnx`` file, on the model's bundled graph, or on the cached export
        of other weights; the size rule and config come from the file's metadata."""
        path = Path(name) if name.endswith(".onnx") else bundled_onnx(name)
        if path is None:
            weights = resolve(name)
            _, export = _torch_side(f"{weights}: weights that ship no ONNX graph are exported to ONNX once; that")
            path = export.cached_onnx(weights)
        self.weights_path = path
        self.engine = OnnxEngine(self.weights_path, providers=onnx_providers(device))
        self.device = "cuda" if "CUDAExecutionProvider" in self.engine.providers else "cpu"
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

    def working_input(self, photo: Photo) -> np.ndarray:
        """Normalised L ``(1, 1, h, w)`` (float32) of the photo resized (antialiased) to its working shape."""
        h, w = self.working_shape(photo)
        px = photo.pixels
        if px.dtype == np.uint16:
            px = (px >> 8).astype(np.uint8)  # the network does not need 16 bits of input
        small = np.asarray(Image.fromarray(px).resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0))
        l_norm = normalize_l(pixels_to_l(small, 255))[None, None]
        # a model trained with --equalize expects equalised L (its weights' config says so)
        return equalize_histogram(l_norm) if self.config.get("equalize_l") else l_norm

    def predict(self, l_norm: np.ndarray, z: np.ndarray | None = None,
                hints: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Normalised L batch ``(N, 1, h, w)`` -> ab in Lab units ``(N, 2, h, w)`` (float32 arrays).

        ``z`` (N, latent_dim): latent codes for a model that has them (``vae``), e.g. from
        :meth:`sample_latents`; None gives the model's default colorization (z = 0). ``hints``: the hint
        model's inputs (:func:`colorize_cli.hints.hint_inputs`); None: no hint.
        """
        if z is not None and not self.latent_dim:
            raise ValueError(f"{self.config['arch']} has no latent code to sample; use a model such as vae")
        if hints and not self.hint_bins:
            raise ValueError(f"{self.config['arch']} takes no colour hints; use a model such as efflite-unet-hints")
        hints = dict(hints or {})
        colourful = hints.pop(REFERENCE_COLOURFULNESS, None)
        ab = denormalize_ab(self.engine(l_norm, z=z, **hints))
        if colourful is not None and np.any(colourful):  # as colourful as the reference
            ab = match_colourfulness(ab, denormalize_l(l_norm[:, 0]), colourful)
        if hints and hints.get("hint_mask") is not None and hints["hint_mask"].any():
            # each point keeps the colour it was given, and so does its surround up to an edge
            ab = spread_points(ab, hints["hint_ab"], hints["hint_mask"], denormalize_l(l_norm[:, 0]))
        return ab

    @property
    def hint_bins(self) -> int:
        """The number of a/b bins of the model's global hint (0: a model that takes no hints)."""
        return self.engine.hint_bins

    @property
    def latent_dim(self) -> int:
        """Size of the model's latent code (0: a model without one)."""
        return self.engine.latent_dim

    def sample_latents(self, n: int, seed: int) -> np.ndarray:
        """``n`` latent codes from the model's prior N(0, I), the same for the same ``seed`` on either
        backend. They are drawn one at a time, so code k depends on the seed and k only: colorization
        2 of ``--samples 4`` is colorization 2 of ``--samples 2``."""
        if not self.latent_dim:
            raise ValueError(f"{self.config['arch']} has no latent code to sample; use a model such as vae")
        rng = np.random.default_rng(seed)
        return np.concatenate([rng.standard_normal((1, self.latent_dim), dtype=np.float32) for _ in range(n)])

    def finish(self, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """Combine the photo's full-resolution L with ``ab_small`` (2, h, w) upsampled; returns
        RGB (H, W, 3) in the photo's bit depth."""
        height, width = photo.size
        ab_small = np.asarray(ab_small, np.float32)
        h, w = ab_small.shape[-2:]
        # bilinear upsampling (half-pixel centres), separably: width once, height per strip
        c0, c1, ct = bilinear_weights(width, w)
        ab_rows = np.take(ab_small, c0, axis=-1)  # contiguous, unlike ab_small[..., c0] (resample.py)
        ab_rows += (np.take(ab_small, c1, axis=-1) - ab_rows) * ct
        r0, r1, rt = bilinear_weights(height, h)
        maxval = photo.maxval
        out = np.empty((height, width, 3), dtype=photo.pixels.dtype)
        step = max(1, STRIP_PIXELS // width)
        for y0 in range(0, height, step):
            y1 = min(height, y0 + step)
            ab = np.take(ab_rows, r0[y0:y1], axis=1)
            ab += (np.take(ab_rows, r1[y0:y1], axis=1) - ab) * rt[y0:y1, None]
            out[y0:y1] = lab_to_pixels(pixels_to_l(photo.pixels[y0:y1], maxval), ab, maxval)
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
        rgb = self._colorize_photo(Photo(np.ascontiguousarray(pixels), alpha))
        return rgb if alpha is None else np.dstack([rgb, alpha])

    def _colorize_photo(self, photo: Photo) -> np.ndarray:
        return self.finish(photo, self.predict(self.working_input(photo))[0])


def _onnx_has_cuda() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def load_model(model: str = "default", device: str = "cpu"):
    """The torch network of ``model`` (a name, a path or an ``hf://`` URI, as for :class:`Colorizer`)
    in eval mode, and its config (architecture, options, training record). Needs torch."""
    networks, _ = _torch_side("load_model")
    return networks.load_generator(resolve(DEFAULT_MODEL if model == "default" else model),
                                   networks.torch_device(device))
