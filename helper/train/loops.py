"""Training and evaluation loops shared by train_vanilla.py and train_ctc.py.

The loops keep running sums on the device and synchronise with the host only
every `sync_every` steps (progress bar, NaN check) and at the end of the epoch,
so a fast GPU is never stalled by per-step `.item()` calls. Under torchrun those
sync points are also where the ranks agree: the epoch sums and the NaN check are
all-reduced, so every rank reports the same metrics and stops at the same step.
"""
import torch
import torch.nn.functional as F
from tqdm import tqdm

from helper.core.distributed import all_reduce_sum
from helper.core.errors import UserError
from helper.core.meters import topk_correct
from helper.core.speed import autocast


class NonFiniteLossError(UserError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch, step, value):
        self.epoch, self.step = epoch, step
        super().__init__(f"the training loss became {value} at epoch {epoch}, step {step}.")


class EpochMeter:
    """Sums of per-sample loss and correct predictions on the device, plus extra loss terms."""

    def __init__(self, device):
        self.device = device
        self.loss = torch.zeros((), device=device, dtype=torch.float64)
        self.correct = torch.zeros((), device=device, dtype=torch.float64)
        self.terms = {}
        self.count = 0

    def update(self, loss, logits, targets, terms=None):
        n = targets.shape[0]
        self.count += n
        self.loss += loss.detach().double() * n
        self.correct += (logits.detach().argmax(1) == targets).sum()
        for name, value in (terms or {}).items():
            total = self.terms.setdefault(name, torch.zeros((), device=self.device, dtype=torch.float64))
            total += value.detach().double() * n

    def result(self):
        """Per-sample means over the epoch, over all ranks' samples under torchrun (one all-reduce)."""
        count = torch.tensor(float(self.count), device=self.device, dtype=torch.float64)
        sums = all_reduce_sum(torch.stack([count, self.loss, self.correct, *self.terms.values()])).tolist()
        n = max(sums[0], 1)
        out = {"loss": sums[1] / n, "acc1": 100.0 * sums[2] / n}
        out.update({name: total / n for name, total in zip(self.terms, sums[3:])})
        return out


def train_one_epoch(model, loader, optimizer, compute_loss, device, epoch, progress=True, sync_every=50,
                    amp=False, print_freq=0):
    """One pass over `loader`; `compute_loss(batch) -> (loss, logits, targets, terms)`.

    `batch` is the loader's tuple moved to `device`; `terms` is a dict of extra
    scalar losses to report (e.g. the contrastive term). Raises
    `NonFiniteLossError` naming the first bad step; the caller keeps the last
    good checkpoint. `amp`: forward and loss under bf16 autocast (CUDA), which
    needs no gradient scaling. `print_freq` > 0: one line every that many steps, as the
    original printed (each costs a host synchronisation).
    """
    model.train()
    meter = EpochMeter(device)
    recent = []
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not progress, dynamic_ncols=True)
    for step, batch in enumerate(bar, start=1):
        batch = [b.to(device, non_blocking=True) if torch.is_tensor(b) else b for b in batch]
        with autocast(device, amp):
            loss, logits, targets, terms = compute_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        meter.update(loss, logits, targets, terms)
        recent.append(loss.detach())
        if print_freq and step % print_freq == 0:
            mean_loss, mean_acc = meter.loss.item() / meter.count, 100.0 * meter.correct.item() / meter.count
            tqdm.write(f"Epoch: [{epoch}][{step}/{len(loader)}]\tLoss {loss.item():.4f} ({mean_loss:.4f})"
                       f"\tAcc@1 {mean_acc:.3f}")
        if step % sync_every == 0 or step == len(loader):
            _check_finite(recent, epoch, step)
            recent = []
            bar.set_postfix(loss=f"{meter.loss.item() / meter.count:.3f}")
    _check_finite(recent, epoch, len(loader))
    return meter.result()


def _check_finite(losses, epoch, last_step):
    """Raise for the first non-finite loss among the last `len(losses)` steps ending at `last_step`.

    The losses are summed over ranks first, so a NaN on any rank stops every rank at the same step.
    """
    if not losses:
        return
    stacked = all_reduce_sum(torch.stack(losses))
    bad = (~torch.isfinite(stacked)).nonzero()
    if bad.numel():
        first = int(bad[0, 0])
        raise NonFiniteLossError(epoch, last_step - len(losses) + 1 + first, stacked[first].item())


@torch.no_grad()
def evaluate(model, loader, device, progress=False, sharded=False):
    """Cross-entropy and top-1 / top-5 accuracy (percent) of `model` on `loader`.

    sharded: `loader` holds this rank's part of the data (dataset.variants.eval_shard);
    the sums are then added over ranks, so every rank returns the metrics of the whole set.
    """
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct1 = torch.zeros((), device=device, dtype=torch.float64)
    correct5 = torch.zeros((), device=device, dtype=torch.float64)
    count = 0
    for batch in tqdm(loader, desc="eval", leave=False, disable=not progress, dynamic_ncols=True):
        images, targets = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        logits = model(images)
        loss += F.cross_entropy(logits, targets, reduction="sum").double()
        hits1, hits5 = topk_correct(logits, targets, (1, 5))
        correct1 += hits1
        correct5 += hits5
        count += targets.shape[0]
    model.train(was_training)
    sums = torch.stack([torch.tensor(float(count), device=device, dtype=torch.float64), loss, correct1, correct5])
    count, loss, correct1, correct5 = (all_reduce_sum(sums) if sharded else sums).tolist()
    count = max(count, 1)
    return {"loss": loss / count, "acc1": 100.0 * correct1 / count, "acc5": 100.0 * correct5 / count}
