"""A checkpoint to fine-tune from an earlier snapshot whose own checkpoint was overwritten.

    python tools/rewind_checkpoint.py runs/flagship/checkpoint.pt \
        runs/flagship/snapshots/step_0004000.safetensors runs/flagship-ft/checkpoint.pt

A run keeps one checkpoint (the latest) and a snapshot of the generator every --checkpoint-every
steps. This writes a copy of CHECKPOINT whose generator is SNAPSHOT's (fp16, widened to fp32), whose
step and training seconds are the snapshot's, and whose output folder is OUTPUT's; the
discriminator, both optimisers' moments, the RNG states and the config stay the checkpoint's (a
later step's: the docs say so where a bundled model was made this way). Then
`colorize train ... --output OUTPUT_FOLDER --resume` continues from there, e.g. with another
`--rebalance`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from colorize_cli.engine.networks import load_generator
from colorize_cli.io.atomic import atomic_write


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("snapshot", type=Path)
    ap.add_argument("output", type=Path)
    args = ap.parse_args(argv)
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model, config = load_generator(args.snapshot)
    if config["arch"] != state["config"]["model"]:
        raise SystemExit(f"{args.snapshot}: a {config['arch']} snapshot, the checkpoint is {state['config']['model']}")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    if weights.keys() != state["generator"].keys():
        raise SystemExit(f"{args.snapshot}: its tensors are not the checkpoint's generator's")
    later = state["step"]
    state["generator"] = weights
    state["step"] = config["step"]
    state["seconds"] = float(config["train_seconds"])
    state["config"]["output"] = str(args.output.parent)
    with atomic_write(args.output) as f:
        torch.save(state, f)
    print(f"{args.output}: step {state['step']}, generator from {args.snapshot.name}, "
          f"the rest from {args.checkpoint} (step {later})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
