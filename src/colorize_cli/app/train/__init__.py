"""One trainer for every model of the zoo.

The registered :class:`~colorize_cli.models.registry.Recipe` says what to train: an optional
discriminator, its adversarial loss and critic steps, the reconstruction loss and the weights of the
other terms. The loop is the same for all, and reads only the recipe: sample a batch of (L, ab),
update the discriminator ``critic_steps`` times, update the generator with
``recon_weight·recon + adversarial + perceptual_weight·perceptual + kl_weight·KL`` (the perceptual
distance: the official LPIPS or its form on a pretrained encoder, ``--perceptual``). Checkpoints are plain
dicts (nanoGPT style) written atomically, and hold the RNG state so that ``--resume`` continues the
same run. Under ``torchrun`` the same loop runs data-parallel (:mod:`colorize_cli.app.distributed`); on a
GPU it runs in bfloat16 autocast with channels-last tensors unless ``--no-amp``.

The modules, each with one job:

    config       TrainConfig and its rules: what a model can train with, the perceptual distance,
                 what a resumed run must keep, what the exported weights record
    step         one training step: the discriminator's (critic's) updates, the generator's, AMP
    checkpoints  the checkpoint (save, load, resume) and the exported weights and snapshots
    trainer      Trainer: the set-up of the networks, optimisers and DDP wrappers; validation
    loop         train(): the data, the schedule of checkpoints, logging, the progress bar
"""

from colorize_cli.app.train.config import (
    PERCEPTUAL_LOSSES,
    RANK_SEED_STRIDE,
    TrainConfig,
    TrainSetupError,
    check_batch,
    check_train_size,
    load_perceptual,
)
from colorize_cli.app.train.loop import train
from colorize_cli.app.train.trainer import Trainer, save_grid

__all__ = [
    "PERCEPTUAL_LOSSES",
    "RANK_SEED_STRIDE",
    "TrainConfig",
    "TrainSetupError",
    "Trainer",
    "check_batch",
    "check_train_size",
    "load_perceptual",
    "save_grid",
    "train",
]
