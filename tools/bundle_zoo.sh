#!/usr/bin/env bash
# Bundle the snapshots of tools/train_zoo.sh chosen on bsds500/val and photos/val (docs/training.md,
# "The zoo on the diverse photos"), then, once eval-report/metrics.json exists, rerun to write the
# bsds500/test metrics into weights.toml:
#   tools/bundle_zoo.sh                          (RUNS: default runs/zoo)
#   colorize eval --model all --data ../shared/data/bsds500/test --output eval-report
#   tools/bundle_zoo.sh
set -euo pipefail
RUNS=${RUNS:-runs/zoo}
MIX="../shared/data/photos/train (14,074 colour photos of 17 sources) and ../shared/data/imagenette/train (9,216 at 64 px, 9,218 at 128 px and above), drawn 2:1, the sources of each in proportion to the square root of their size"
EVAL_COMMAND="colorize eval --model all --data ../shared/data/bsds500/test --output eval-report"
bundle() {  # [NOTES=...] NAME STEP SIZE [init weights of c505c1a: STEPS BATCH PX SECONDS]
  local name=$1 step=$2 size=$3 snapshot
  snapshot=$(printf "%s/%s/snapshots/step_%07d.safetensors" "$RUNS" "$name" "$step")
  local trained="$MIX, $step steps" args=()
  if [ $# -gt 3 ]; then
    local from=$4 isteps=$5 ibatch=$6 ipx=$7 isec=$8
    trained="$MIX: $step steps fine-tuning the $from weights bundled at commit c505c1a ($isteps steps of $ibatch at $ipx px on ../shared/data/imagenette/train)"
    args+=(--config "init=\"$from as bundled at commit c505c1a (tools/train_zoo.sh takes it out of git)\""
           --config "init_trained=\"$isteps × $ibatch at $ipx px on imagenette\"" --config "init_train_seconds=$isec")
  fi
  if [ -f eval-report/metrics.json ]; then args+=(--eval eval-report/metrics.json --eval-command "$EVAL_COMMAND"); fi
  if [ -n "${NOTES:-}" ]; then args+=(--notes "$NOTES"); fi
  python tools/bundle_weights.py "$snapshot" "$name" --working-size "$size" --trained-on "$trained" "${args[@]}"
}
NOTES="Trained with colour rebalancing lambda 0.9 (the trainer's --rebalance; not part of the study's recipe). Stopped at step 2000 of 3000 to free the core." bundle regression 2000 128
NOTES="Trained with colour rebalancing lambda 0.9 (the trainer's --rebalance; not part of the study's recipe)." bundle vae 1500 128
bundle unet-bn 250 128 unet-bn 500 64 64 549
bundle pix2pix 250 128 pix2pix 1250 16 128 1291
NOTES="The perceptual term is the LPIPS-form distance on EfficientNet-Lite0 features at the study's weight 50; with it the outputs come out nearly gray (docs/perceptual.md)." bundle pix2pix-lpips 500 128 pix2pix 1250 16 128 1291
NOTES="The perceptual term is the LPIPS-form distance on EfficientNet-Lite0 features at the study's weight 50; with it the outputs come out nearly gray (docs/perceptual.md). Trained with colour rebalancing lambda 0.9 (the trainer's --rebalance; not part of the study's recipe). Stopped at step 160 of 250." bundle pix2pix-wgangp-lpips 125 128 pix2pix-wgangp 500 16 128 2439
NOTES="Trained with colour rebalancing lambda 0.9 (the trainer's --rebalance; not part of the study's recipe)." bundle pix2pix-wgangp 125 128 pix2pix-wgangp 500 16 128 2439
NOTES="Trained with colour rebalancing lambda 0.9 (the trainer's --rebalance; not part of the study's recipe)." bundle autoencoder 300 224 autoencoder 750 32 224 1634
