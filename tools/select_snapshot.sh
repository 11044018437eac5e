#!/usr/bin/env bash
# Model selection on bsds500/val: every snapshot given, at each working size given.
#   tools/select_snapshot.sh "128 192" runs/unet-sn/snapshots/step_*.safetensors
# (COLORIZE="python -m colorize_cli" runs a source checkout instead of the installed command)
# Prints one line per (snapshot, size): AuC, CF, ΔCF, PSNR of the EVAL.md protocol on val.
set -euo pipefail
sizes=$1; shift
for snap in "$@"; do
  for s in $sizes; do
    ${COLORIZE:-colorize} eval --model "$snap" --data ../shared/data/bsds500/val --output "/tmp/select/$(basename "$snap" .safetensors)-$s" \
      --size "$s" --json 2>/dev/null | tail -1 | python -c "
import json, sys
m = [v for k, v in json.load(sys.stdin).items() if k != 'gray'][0]
print(f\"$(basename "$snap") size $s: AuC {m['auc']:.2f} CF {m['cf']:.1f} (truth {m['cf_gt']:.1f}) dCF {m['dcf']:.1f} PSNR {m['psnr']:.2f}\")"
  done
done
