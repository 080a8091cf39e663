"""Sweep rows as TensorBoard scalars, next to the training curves of the same run.

Training writes its events to `<tb_path>/<run name>/`; every sweep of that run writes to
`<tb_path>/<run name>/sweeps/`, one scalar per numeric column of each row, with the
checkpoint epoch as the step. The tag is `<kind>/<variant>/<column>`, read off the results
file's name, so each results file keeps its own curves:

    transfer_cinic10_linear.csv  -> transfer/cinic10_linear/final_acc, .../source_acc, ...
    discriminability_cifar100.csv -> discriminability/cifar100/recall_at_1, .../nmi, ...
    mi_xt_cifar100.csv           -> mi/xt_cifar100/mi, mi/xt_cifar100/std, ...

`tensorboard --logdir save/tensorboard` then shows training and every sweep side by side
while the sweeps run (each row is flushed as it is written). The CSV stays the record;
the events are a view of it. A sub-folder rather than the training folder itself, because
a resumed training run tells TensorBoard to drop every later step of its folder.
"""
import numbers
import os

from helper.core.writes import guarded_write
from helper.train.run_folder import tb_dir

SWEEP_SUBDIR = "sweeps"


def sweep_log_dir(tb_path, run_dir):
    """`<tb_path>/<run folder name>/sweeps`: beside the training events of the same run."""
    return os.path.join(tb_dir(tb_path, run_dir), SWEEP_SUBDIR)


def tag_prefix(results_path):
    """'transfer_cinic10_linear.csv' -> 'transfer/cinic10_linear/'; a name without '_' -> 'name/'."""
    kind, _, variant = os.path.splitext(os.path.basename(results_path))[0].partition("_")
    return f"{kind}/{variant}/" if variant else f"{kind}/"


class SweepBoard:
    """Writes each sweep row's numeric columns as scalars at step = its epoch; opens its writer on the
    first row (a sweep with nothing to do leaves no event file). `tb_path` '' or None: writes nothing."""

    def __init__(self, tb_path, run_dir, results_path):
        self.log_dir = sweep_log_dir(tb_path, run_dir) if tb_path else None
        self.prefix = tag_prefix(results_path)
        self.writer = None

    def add(self, epoch, row):
        if self.log_dir is None:
            return
        with guarded_write(self.log_dir, safe="The results file keeps every row; only its TensorBoard view is "
                                             "incomplete."):
            if self.writer is None:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(log_dir=self.log_dir)
            for column, value in row.items():
                if isinstance(value, numbers.Real) and not isinstance(value, bool) and column != "epoch":
                    self.writer.add_scalar(self.prefix + column, value, int(epoch))
            self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
