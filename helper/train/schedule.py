"""Learning-rate schedules, evaluated once per epoch (epochs count from 1)."""
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleConfig:
    """The learning-rate schedule of a training run (the optimisation flags of helper/cli/train.py)."""
    learning_rate: float
    epochs: int
    warmup_epochs: int                  # resolved: the script's default filled in (helper.cli.train.warmup_epochs)
    lr_decay_epochs: tuple = ()         # step-decay milestones; empty = cosine annealing
    lr_decay_rate: float = 0.1
    min_lr_scale: float = 0.0           # cosine floor, a fraction of each phase's initial learning rate


def cosine_lr(base_lr, epoch, first_epoch, num_epochs, min_lr_scale=0.0):
    """Cosine annealing from `base_lr` at `first_epoch` to `base_lr * min_lr_scale` after `num_epochs`."""
    progress = (epoch - first_epoch) / max(num_epochs, 1)
    min_lr = base_lr * min_lr_scale
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def step_lr(base_lr, epoch, decay_epochs, decay_rate=0.1):
    """Step decay as in CRD: multiply by `decay_rate` once for every milestone already passed."""
    return base_lr * decay_rate ** sum(epoch > milestone for milestone in decay_epochs)


def make_lr_schedule(config, phases=None):
    """epoch -> learning rate, for the `ScheduleConfig` `config`.

    `lr_decay_epochs` given: step decay over the whole run (the CRD / ITRD setting).
    Otherwise cosine annealing per phase; `phases` is a list of `(first_epoch,
    num_epochs, base_lr)`. The default is the original train_vanilla.py's single
    cosine, lr0 * (m + (1 - m) * 0.5 * (1 + cos(pi * e / (E + 1)))) with
    m = `min_lr_scale`: a phase starting at epoch 0 and lasting E + 1 epochs.
    CTC passes two phases: stage 1 from `learning_rate`, stage 2 restarting lower.

    The first `warmup_epochs` W epochs replace whichever schedule follows by the
    original's linear ramp lr0 * e / W.
    """
    c = config
    if c.lr_decay_epochs:
        def after_warmup(epoch):
            return step_lr(c.learning_rate, epoch, c.lr_decay_epochs, c.lr_decay_rate)
    else:
        phases = phases or [(0, c.epochs + 1, c.learning_rate)]

        def after_warmup(epoch):
            first, length, base = max((p for p in phases if p[0] <= epoch), key=lambda p: p[0], default=phases[0])
            return cosine_lr(base, epoch, first, length, c.min_lr_scale)

    def lr_at(epoch):
        if epoch <= c.warmup_epochs:
            return c.learning_rate * epoch / c.warmup_epochs
        return after_warmup(epoch)
    return lr_at


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr
