#!/usr/bin/env bash
# Train the zoo's study models as their bundled weights were trained (docs/training.md, "The zoo").
#   tools/train_zoo.sh MODEL...          one `colorize train` per model, one after another
# Each run: ../shared/data/photos/train drawn 2:1 against ../shared/data/imagenette/train (sources
# within photos/ in proportion to the square root of their size), 16 bsds500/val photos for the
# grids and validation lines, a checkpoint and a snapshot every 250 steps, one CPU thread (two runs
# at a time on the two cores). RUNS (default runs/zoo) is where the run folders go; all runs share
# RUNS/cache, the decoded datasets. COLORIZE overrides the command ("python -m colorize_cli" for a
# source checkout). EXTRA adds options to every run (e.g. EXTRA=--resume).
# Models whose recipe has --init fine-tune the zoo's earlier weights (trained on imagenette alone, as
# bundled at commit c505c1a: docs/training.md); they are taken out of git into RUNS/init/ first.
set -euo pipefail
RUNS=${RUNS:-runs/zoo}
COLORIZE=${COLORIZE:-colorize}
DATA=${DATA:-../shared/data}

# model -> "size batch steps [options...]": sizes are what each architecture takes (pix2pix: multiples
# of 128, autoencoder: 224 only); steps are what fitted into the compute budget of docs/training.md
EARLIER=c505c1a
declare -A RECIPE=(
  [regression]="64 64 3000 --rebalance 0.9"
  [vae]="64 64 2000 --rebalance 0.9"
  [unet-bn]="64 64 750 --init unet-bn"
  [pix2pix]="128 16 750 --init pix2pix"
  [pix2pix-lpips]="128 16 500 --init pix2pix --perceptual efficientnet-lite0"
  [pix2pix-wgangp]="128 16 250 --init pix2pix-wgangp --rebalance 0.9 --checkpoint-every 125"
  [pix2pix-wgangp-lpips]="128 16 250 --init pix2pix-wgangp --rebalance 0.9 --perceptual efficientnet-lite0 --checkpoint-every 125"
  [autoencoder]="224 32 400 --init autoencoder --rebalance 0.9 --checkpoint-every 100"
  [unet-sn]="64 64 750 --init unet-sn"
  [resnet-patchgan]="64 32 500 --init resnet-patchgan"
)
[ $# -gt 0 ] || { echo "usage: $0 MODEL... (known: ${!RECIPE[*]})" >&2; exit 2; }
for name in "$@"; do
  [ -n "${RECIPE[$name]:-}" ] || { echo "unknown model $name (known: ${!RECIPE[*]})" >&2; exit 2; }
  read -r size batch steps options <<< "${RECIPE[$name]} "
  if [[ $options =~ --init\ ([a-z0-9-]+) ]]; then
    init=${BASH_REMATCH[1]}
    mkdir -p "$RUNS/init"
    git show "$EARLIER:src/colorize_cli/weights/$init.safetensors" > "$RUNS/init/$init.safetensors"
    options=${options/--init $init/--init $RUNS/init/$init.safetensors}
  fi
  mkdir -p "$RUNS/$name" "$RUNS/cache"
  [ -e "$RUNS/$name/cache" ] || ln -s ../cache "$RUNS/$name/cache"
  # shellcheck disable=SC2086
  $COLORIZE train --model "$name" --dataset "$DATA/photos/train:2" --dataset "$DATA/imagenette/train:1" \
    --val "$DATA/bsds500/val" --output "$RUNS/$name" --size "$size" --batch-size "$batch" --steps "$steps" \
    --threads 1 --checkpoint-every 250 $options ${EXTRA:-}
done
