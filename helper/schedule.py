"""Learning-rate schedules, evaluated once per epoch (epochs count from 1)."""
import math


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
    num_epochs, base_lr)`, by default one phase over all epochs. CTC passes two
    phases: stage 1 from `learning_rate`, stage 2 restarting at a lower rate.
    """
    if args.lr_decay_epochs:
        return lambda epoch: step_lr(args.learning_rate, epoch, args.lr_decay_epochs, args.lr_decay_rate)
    phases = phases or [(1, args.epochs, args.learning_rate)]

    def lr_at(epoch):
        first, length, base = max((p for p in phases if p[0] <= epoch), key=lambda p: p[0], default=phases[0])
        return cosine_lr(base, epoch, first, length, args.min_lr_scale)
    return lr_at


def set_lr(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr
