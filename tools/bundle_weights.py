"""Bundle a trained snapshot as a model's default weights, and record it in weights.toml.

    python tools/bundle_weights.py runs/unet-sn/snapshots/step_0007000.safetensors unet-sn \
        --working-size 128 --eval eval-report/metrics.json --trained-on "..." --license other

Re-exports the snapshot (fp16 safetensors + JSON config) into src/colorize_cli/weights/NAME.safetensors
with the chosen default working size in its config, then writes its sha256, size, bundled = true,
training data and the eval metrics into weights.toml.

    python tools/bundle_weights.py --eval eval-report/metrics.json --eval-command "..." unet-sn

(no snapshot) writes only the eval metrics of the weights already bundled as NAME: for a model the
eval run measured again but that was not retrained.

Every bundled model also ships its ONNX graph (NAME.onnx beside the safetensors: weights stored in
float16 as in the safetensors, computed in float32; `colorize export --compact`), which colorizing runs
with ONNX Runtime without torch; weights.toml pins it as `onnx` and `onnx_sha256`. Bundling a snapshot
makes it; for the weights already bundled:

    python tools/bundle_weights.py --onnx all        (or --onnx NAME)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from colorize_cli.engine.export import export_onnx
from colorize_cli.engine.networks import export_generator, load_generator
from colorize_cli.engine.weights import (
    bundled_path,
    read_weights_toml,
    update_weights_toml,
    weights_toml_path,
)
from colorize_cli.io.files import sha256_of

ROOT = Path(__file__).resolve().parents[1]
METRIC_KEYS = ("psnr", "de2000", "auc", "cf", "cf_gt", "dcf", "grayish", "n")


def write_metrics_table(name: str, metrics: dict, source: str) -> None:
    path = weights_toml_path()
    text = path.read_text()
    body = f"[models.{name}.metrics]\n# {source}\n" + "".join(
        f"{k} = {round(metrics[k], 4) if isinstance(metrics[k], float) else metrics[k]}\n" for k in METRIC_KEYS)
    pattern = re.compile(rf"^\[models\.{re.escape(name)}\.metrics\]\n(?:(?!\[).*\n?)*", re.MULTILINE)
    text = pattern.sub(body + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n")


def write_model_metrics(name: str, report: Path, command: str) -> None:
    metrics = json.loads(report.read_text())
    model_metrics = metrics[name] if name in metrics else next(
        v for k, v in metrics.items() if k != "gray")  # a report of this model alone
    write_metrics_table(name, model_metrics, f"bsds500/test, EVAL.md protocol: {command}")


def bundle_onnx(name: str) -> None:
    """Export the bundled weights of ``name`` to NAME.onnx beside them (verified against torch by the
    export) and pin the file in weights.toml."""
    entry = read_weights_toml()[name]
    target = bundled_path(entry).with_suffix(".onnx")
    result = export_onnx(name, target, compact=True)
    update_weights_toml(name, {"onnx": target.name, "onnx_sha256": sha256_of(target)})
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), largest difference from torch "
          f"{result.max_diff_lab:.1e} Lab units; weights.toml updated")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("snapshot", type=Path, nargs="?", help="omit to write only the --eval metrics of NAME")
    ap.add_argument("name", nargs="?")
    ap.add_argument("--onnx", metavar="NAME", help="only (re)make the bundled ONNX graph of NAME, or 'all'")
    ap.add_argument("--working-size", type=int)
    ap.add_argument("--eval", type=Path, help="metrics.json of a colorize eval run of the bundled model")
    ap.add_argument("--eval-command", default="", help="the command that produced --eval")
    ap.add_argument("--trained-on")
    ap.add_argument("--license", default="other")
    ap.add_argument("--notes", default="", help="what the model card should say besides the numbers")
    ap.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                    help="set a config value (JSON) the snapshot lacks, e.g. train_seconds=4882 or "
                    "train_batch=64 for runs made before the trainer recorded them")
    args = ap.parse_args()
    if args.onnx:
        names = [n for n, e in read_weights_toml().items() if e.bundled] if args.onnx == "all" else [args.onnx]
        for name in names:
            bundle_onnx(name)
        return
    if args.name is None:  # one positional: NAME alone (writing only --eval metrics)
        if args.snapshot is None:
            ap.error("NAME is required")
        args.name, args.snapshot = str(args.snapshot), None
    if args.snapshot is None:
        if not args.eval or args.name not in read_weights_toml():
            ap.error("without a snapshot, NAME must be in weights.toml and --eval is required")
        write_model_metrics(args.name, args.eval, args.eval_command)
        print(f"weights.toml: metrics of {args.name} from {args.eval}")
        return
    if args.working_size is None or args.trained_on is None:
        ap.error("--working-size and --trained-on are required with a snapshot")

    model, config = load_generator(args.snapshot)
    target = ROOT / "src" / "colorize_cli" / "weights" / f"{args.name}.safetensors"
    extra = {k: v for k, v in config.items() if k not in ("arch", "options", "colorize_cli_version")}
    extra["working_size"] = args.working_size
    for item in args.config:
        key, _, value = item.partition("=")
        extra[key] = json.loads(value)
    export_generator(model, config["arch"], target, extra=extra, options=config.get("options"))
    fields = {"filename": target.name, "arch": config["arch"], "sha256": sha256_of(target),
              "size": target.stat().st_size, "bundled": True}
    if args.name not in read_weights_toml():  # a new entry: not on the Hub until 'colorize publish'
        fields |= {"repo_id": "", "revision": "", "published": False}
    fields |= {"license": args.license, "trained_on": args.trained_on}
    update_weights_toml(args.name, fields | ({"notes": args.notes} if args.notes else {}))
    bundle_onnx(args.name)
    if args.eval:
        write_model_metrics(args.name, args.eval, args.eval_command)
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB), weights.toml updated")


if __name__ == "__main__":
    main()
