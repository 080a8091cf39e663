"""Learning-rate schedules, evaluated once per epoch (epochs count from 1)."""
import math

from helper.core.errors import UserError


def cosine_lr(base_lr, epoch, first_epoch, num_epochs, min_lr_scale=0.0):
    """Cosine annealing from `base_lr` at `first_epoch` to `base_lr * min_lr_scale` after `num_epochs`."""
    progress = (epoch - first_epoch) / max(num_epochs, 1)
    min_lr = base_lr * min_lr_scale
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def step_lr(base_lr, epoch, decay_epochs, decay_rate=0.1):
    """Step decay as in CRD: multiply by `decay_rate` once for every milestone already passed."""
    return base_lr * decay_rate ** sum(epoch > milestone for milestone in decay_epochs)


def make_lr_schedule(args, phases=None):
    """epoch -> learning rate.

    `--lr_decay_epochs` given: step decay over the whole run (the CRD / ITRD setting).
    Otherwise cosine annealing per phase; `phases` is a list of `(first_epoch,
    num_epochs, base_lr)`. The default is the original train_vanilla.py's single
    cosine, lr0 * (m + (1 - m) * 0.5 * (1 + cos(pi * e / (E + 1)))) with
    m = `--min_lr_scale`: a phase starting at epoch 0 and lasting E + 1 epochs.
    CTC passes two phases: stage 1 from `learning_rate`, stage 2 restarting lower.

    The first `--warmup_epochs` W epochs (resolved by `resolve_warmup`) replace
    whichever schedule follows by the original's linear ramp lr0 * e / W.
    """
    if args.warmup_epochs is None:
        raise ValueError("args.warmup_epochs is unresolved: call resolve_warmup(args, ...) first")
    if args.lr_decay_epochs:
        def after_warmup(epoch):
            return step_lr(args.learning_rate, epoch, args.lr_decay_epochs, args.lr_decay_rate)
    else:
        phases = phases or [(0, args.epochs + 1, args.learning_rate)]

        def after_warmup(epoch):
            first, length, base = max((p for p in phases if p[0] <= epoch), key=lambda p: p[0], default=phases[0])
            return cosine_lr(base, epoch, first, length, args.min_lr_scale)

    def lr_at(epoch):
        if epoch <= args.warmup_epochs:
            return args.learning_rate * epoch / args.warmup_epochs
        return after_warmup(epoch)
    return lr_at


def resolve_warmup(args, cosine_warmup):
    """Fill an absent `--warmup_epochs`: `cosine_warmup` (the script's default) under cosine
    annealing, 0 under step decay, whose CRD / ITRD protocol has no warm-up."""
    if args.warmup_epochs is None:
        args.warmup_epochs = 0 if args.lr_decay_epochs else cosine_warmup
    if args.warmup_epochs < 0:
        raise UserError(f"--warmup_epochs must be 0 or more, got {args.warmup_epochs}.")
    return args


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr
