#!/usr/bin/env bash
# Train the zoo's study models as their bundled weights were trained (docs/training.md, "The zoo").
#   tools/train_zoo.sh MODEL...          one `colorize train` per model, one after another
# Each run: ../shared/data/photos/train drawn 2:1 against ../shared/data/imagenette/train (sources
# within photos/ in proportion to the square root of their size), 16 bsds500/val photos for the
# grids and validation lines, a checkpoint and a snapshot every 250 steps, one CPU thread (two runs
# at a time on the two cores). RUNS (default runs/zoo) is where the run folders go; all runs share
# RUNS/cache, the decoded datasets. COLORIZE overrides the command ("python -m colorize_cli" for a
# source checkout). EXTRA adds options to every run (e.g. EXTRA=--resume).
# A recipe's --init NAME@COMMIT fine-tunes the weights bundled as NAME at COMMIT (taken out of git into
# RUNS/init/ first): c505c1a holds the zoo trained on imagenette alone, 0b15d5e the first round on the mix
# (made by this script as it stood at that commit); docs/training.md has the whole lineage of each model.
set -euo pipefail
RUNS=${RUNS:-runs/zoo}
COLORIZE=${COLORIZE:-colorize}
DATA=${DATA:-../shared/data}

# model -> "size batch steps [options...]": sizes are what each architecture takes (pix2pix: multiples
# of 128, autoencoder: 224 only); steps are what fitted into the compute budget of docs/training.md
declare -A RECIPE=(
  [regression]="64 64 3000 --rebalance 0.9"
  [vae]="64 64 500 --init vae@0b15d5e --rebalance 0.5"
  [unet-bn]="64 64 750 --init unet-bn@c505c1a"
  [pix2pix]="128 16 250 --init pix2pix@0b15d5e --lr 2e-5 --rebalance 0.85 --checkpoint-every 125"
  [pix2pix-lpips]="128 16 250 --init pix2pix@0b15d5e --lr 2e-5 --rebalance 0.7 --perceptual efficientnet-lite0 --perceptual-weight 5 --checkpoint-every 125"
  [pix2pix-wgangp]="128 16 250 --init pix2pix-wgangp@c505c1a --rebalance 0.9 --checkpoint-every 125"
  [pix2pix-wgangp-lpips]="128 16 250 --init pix2pix-wgangp@0b15d5e --rebalance 0.5 --perceptual efficientnet-lite0 --perceptual-weight 5 --checkpoint-every 125"
  [autoencoder]="224 32 400 --init autoencoder@0b15d5e --recon-loss l1 --rebalance 0.5 --lr-decay-steps 400 --checkpoint-every 50"
)
# unet-sn and resnet-patchgan were not retrained on the mix: their bundled weights are the earlier zoo's
# (imagenette only; `git show c505c1a:tools/train_zoo.sh`, and docs/training.md for unet-sn's own run)
[ $# -gt 0 ] || { echo "usage: $0 MODEL... (known: ${!RECIPE[*]})" >&2; exit 2; }
for name in "$@"; do
  [ -n "${RECIPE[$name]:-}" ] || { echo "unknown model $name (known: ${!RECIPE[*]})" >&2; exit 2; }
  read -r size batch steps options <<< "${RECIPE[$name]} "
  if [[ $options =~ --init\ ([a-z0-9-]+)@([0-9a-f]+) ]]; then
    init=${BASH_REMATCH[1]} commit=${BASH_REMATCH[2]}
    mkdir -p "$RUNS/init"
    git show "$commit:src/colorize_cli/weights/$init.safetensors" > "$RUNS/init/$init@$commit.safetensors"
    options=${options/--init $init@$commit/--init $RUNS/init/$init@$commit.safetensors}
  fi
  mkdir -p "$RUNS/$name" "$RUNS/cache"
  [ -e "$RUNS/$name/cache" ] || ln -s ../cache "$RUNS/$name/cache"
  # shellcheck disable=SC2086
  $COLORIZE train --model "$name" --dataset "$DATA/photos/train:2" --dataset "$DATA/imagenette/train:1" \
    --val "$DATA/bsds500/val" --output "$RUNS/$name" --size "$size" --batch-size "$batch" --steps "$steps" \
    --threads 1 --checkpoint-every 250 $options ${EXTRA:-}
done
