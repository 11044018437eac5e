"""A run's state on disk: the checkpoint that ``--resume`` continues, and the exported weights.

A checkpoint is a plain dict (nanoGPT style) written atomically: the networks, the optimisers, the
step, the training time, the config, the colour rebalancing and every rank's RNG states, so that a
resumed run continues the same one. At each checkpoint the generator is also exported as the
run's weights (``MODEL.safetensors``) and as a snapshot of that step (``snapshots/step_N``).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import torch

from colorize_cli.app.train.config import RANK_SEED_STRIDE, _log, check_resume, recorded_options
from colorize_cli.engine.networks import export_generator
from colorize_cli.errors import OptionError
from colorize_cli.io.atomic import atomic_write
from colorize_cli.models.losses import ColorRebalance


class Checkpoints:
    """The state of :class:`~colorize_cli.app.train.trainer.Trainer`: save, load, resume, export."""

    def state_dict(self) -> dict:
        """The whole state (a collective under torchrun: every rank's RNG states are gathered)."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        rngs = self.world.gather((self.rng.get_state(), torch.get_rng_state(), cuda))
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict() if self.discriminator else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "step": self.step,
            "seconds": self.seconds,
            "config": asdict(self.config),
            "rng_ranks": rngs,  # (sampler, torch CPU, CUDA or None) of each rank
            "rebalance": self.rebalance.weights if self.rebalance else None,
            "perceptual_loss": self.perceptual_name,
        }

    def load_state_dict(self, state: dict) -> None:
        saved = state["config"]
        check_resume(saved, state.get("perceptual_loss", self.perceptual_name), self.config, self.spec,
                     self.recipe, self.perceptual_name)
        try:
            self.generator.load_state_dict(state["generator"])
        except RuntimeError as exc:
            legacy = " ".join(f"{{model_option}} {k}={v}" for k, v in self.spec.legacy_options.items())
            hint = f"; a checkpoint from before that option needs {legacy}" if legacy else ""
            raise OptionError(f"checkpoint's generator does not fit {self.config.model} with options "
                             f"{self.model_options or {}}{hint}") from exc
        self.opt_g.load_state_dict(state["opt_g"])  # its rates are set anew at each step (_set_rates)
        if self.encoder is not None:  # a later phase may unfreeze the encoder or change its rate
            self._param_groups(self.config.lr or self.recipe.lr)  # (un)freezes the encoder's parameters
            if saved.get("freeze_encoder", False) != self.config.freeze_encoder:
                _log(f"--freeze-encoder: {saved.get('freeze_encoder', False)} in the checkpoint, "
                     f"{self.config.freeze_encoder} from now on")
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            self.opt_d.load_state_dict(state["opt_d"])
        self._set_base_rates()  # the checkpoint's groups carry its rates; this run's config sets them
        self.step = state["step"]
        self.seconds_before = state.get("seconds", 0.0)
        self._load_rngs(state)
        if state.get("rebalance") is not None:
            self.rebalance = ColorRebalance(state["rebalance"])
        # a resumed run may change the rebalancing strength (a fine-tuning phase): train() refits
        self.resumed_rebalance = state["config"].get("rebalance", 0.0)

    def _load_rngs(self, state: dict) -> None:
        """This rank's RNG states from the checkpoint; fresh streams if it had another number of ranks."""
        ranks = state.get("rng_ranks") or [(state["rng"], state["torch_rng"], None)]  # older checkpoints
        if len(ranks) == self.world.size:
            rng, torch_rng, *cuda = ranks[self.world.rank]
            self.rng.set_state(rng)
            torch.set_rng_state(torch_rng)
            if cuda and cuda[0] is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(cuda[0], self.device)
        else:  # another number of processes: a fresh stream per rank, still reproducible
            seed = self.config.seed + RANK_SEED_STRIDE * self.world.rank + self.step
            self.rng.manual_seed(seed)
            torch.manual_seed(seed)
            if self.world.is_main:
                _log(f"resuming {len(ranks)} process(es) on {self.world.size}: new random streams from step {self.step}")

    @property
    def seconds(self) -> float:
        """Wall time spent training this checkpoint, over all its runs."""
        return self.seconds_before + time.perf_counter() - self.started

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def save_checkpoint(self, state: dict | None = None) -> None:
        with atomic_write(self.checkpoint_path) as f:
            torch.save(state if state is not None else self.state_dict(), f)

    def resume(self) -> None:
        # on the CPU: RNG states must stay there; load_state_dict copies the rest onto the device
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        self.load_state_dict(state)

    def export_weights(self, path: Path, trained_on: str, seconds: float) -> None:
        """Export the generator, with its config and how it was trained, to ``path`` and to the
        snapshot of this step (``snapshots/step_N.safetensors``)."""
        config = self.config
        extra = {"step": self.step, "trained_on": trained_on, "train_size": config.size,
                 "train_batch": config.batch_size, "train_seconds": round(seconds),
                 **recorded_options(config, self.spec, self.recipe, self.perceptual_name)}
        for target in (path, self.out / "snapshots" / f"step_{self.step:07d}.safetensors"):
            export_generator(self.generator, config.model, target, extra, self.model_options)
