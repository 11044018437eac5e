#!/usr/bin/env bash
# Train the zoo's bundled models as their weights in weights.toml were trained (docs/training.md).
#   tools/train_zoo.sh [MODEL...]        default: every model below, one after another
# Each run: imagenette/train, 16 bsds500/val photos for the grids, a checkpoint every 250 steps,
# one CPU thread (the bundled weights were trained two runs at a time on the two cores).
# RUNS (default runs/) is where the run folders go; COLORIZE overrides the command
# (COLORIZE="python -m colorize_cli" for a source checkout). unet-sn's two-phase recipe is in
# docs/training.md.
set -euo pipefail
RUNS=${RUNS:-runs}
COLORIZE=${COLORIZE:-colorize}

# model -> "size batch steps": sizes are what each architecture takes (pix2pix: multiples of 128,
# autoencoder: 224 only); steps are what fitted into the compute budget of docs/training.md
declare -A RECIPE=(
  [unet-bn]="64 64 1500"
  [resnet-patchgan]="64 32 1000"
  [pix2pix]="128 16 2500"
  [pix2pix-wgangp]="128 16 500"
  [regression]="64 64 1500"
  [autoencoder]="224 32 800"
  [vae]="64 64 1000"
)
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(regression vae unet-bn resnet-patchgan pix2pix pix2pix-wgangp autoencoder)
for name in "${models[@]}"; do
  [ -n "${RECIPE[$name]:-}" ] || { echo "unknown model $name (known: ${!RECIPE[*]})" >&2; exit 2; }
  read -r size batch steps <<< "${RECIPE[$name]}"
  $COLORIZE train --model "$name" --dataset ../shared/data/imagenette/train --val ../shared/data/bsds500/val \
    --output "$RUNS/$name" --size "$size" --batch-size "$batch" --steps "$steps" --checkpoint-every 250 --threads 1
done
