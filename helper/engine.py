"""A training run's folder: checkpoints, exact resume, TensorBoard and the epoch log.

    run = TrainingRun(args, name, model, optimizer, state={"criterion": crd})
    start = run.prepare()            # fresh run (writes ckpt_epoch_0) or --resume
    for epoch in range(start, args.epochs + 1):
        ... train, evaluate ...
        run.end_epoch(epoch, lr, train_metrics, val_metrics)
    run.finish()

Files in `<model_path>/<name>/`: `ckpt_epoch_<E>.pth` every `save_freq` epochs and
`ckpt_epoch_0.pth` (the initialisation), `<arch>_best.pth`, `<arch>_last.pth`,
`resume.pth` (everything needed to continue exactly: model, optimizer, the extra
`state` objects, RNG; rewritten every epoch), `args.json` and `log.txt` (one JSON
line per epoch). TensorBoard events go to `<tb_path>/<name>/`.

Under torchrun every rank runs the same TrainingRun; rank 0 alone writes files and
prints, every rank reads resume.pth (which holds each rank's RNG state).
"""
import json
import os
import shutil
import time

from tqdm import tqdm

from helper.checkpoint import (CKPT_RE, changed_flags, ckpt_name, describe_changes, list_checkpoints,
                               load_checkpoint, model_checkpoint, model_state, plain, save_atomic, unwrap)
from helper.distributed import all_gather_objects, barrier, get_rank, get_world_size, is_main_process, seed_this_rank
from helper.errors import UserError
from helper.loops import NonFiniteLossError, train_one_epoch
from helper.schedule import set_lr
from helper.seed import rng_state, set_rng_state

RESUME_FILE = "resume.pth"
# Flags that may differ on --resume: they change where and how fast a run executes, not what it computes.
RESUME_FREE_ARGS = {"resume", "overwrite", "allow_arg_changes", "device", "num_workers", "no_progress",
                    "data_folder", "model_path", "tb_path", "amp", "channels_last", "compile", "loader", "sync_bn",
                    "print_freq"}


# Flags added after runs were already written, with the value those runs had.
LEGACY_ARGS = {"warmup_epochs": 0}


def changed_args(saved, current):
    """{flag: (saved, current)} for the flags whose change would alter a resumed run's trajectory.

    --epochs may grow under step decay (--lr_decay_epochs), whose learning rates do not
    depend on the run length; under cosine annealing it reshapes the whole schedule.
    """
    free = RESUME_FREE_ARGS | ({"epochs"} if current.get("lr_decay_epochs") else set())
    return changed_flags({**LEGACY_ARGS, **saved}, current, free)


class TrainingRun:
    def __init__(self, args, name, model, optimizer, state=None, evaluate_fn=None):
        self.args = args
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.state = state or {}
        self.evaluate_fn = evaluate_fn
        self.run_dir = os.path.join(args.model_path, name)
        self.tb_dir = os.path.join(args.tb_path, name)
        self.best_acc = None
        self.main = is_main_process()
        self.writer = None
        self._epoch_start = time.time()

    # ----------------------------------------------------------------- start
    def prepare(self):
        """Create the folder or resume from it; return the first epoch to train."""
        resume_path = os.path.join(self.run_dir, RESUME_FILE)
        existing = list_checkpoints(self.run_dir)
        resuming = self.args.resume and os.path.isfile(resume_path)
        barrier()  # every rank has looked at the folder before rank 0 writes to it
        if resuming:
            start = self._load_resume(resume_path)
            best = "none yet" if self.best_acc is None else f"{self.best_acc:.2f}"
            self._log(f"resuming {self.run_dir} at epoch {start} (best so far: {best})")
        else:
            overwrite = getattr(self.args, "overwrite", False)
            if self.args.resume and list(existing) == [0]:
                # Stopped between the initial checkpoint and the first resume.pth: nothing trained yet.
                self._log(f"{self.run_dir} holds only the initialisation; starting the run again")
                overwrite = True
            if existing and not overwrite:
                if self.args.resume:
                    raise UserError(f"run folder {self.run_dir} holds {len(existing)} checkpoints but no "
                                    f"{RESUME_FILE} to continue from (a run of other code?); pass --overwrite "
                                    "to start it again, or another --note.")
                raise UserError(f"run folder {self.run_dir} already holds {len(existing)} checkpoints; pass "
                                "--resume to continue that run, --overwrite to start it again, or another --note.")
            start = 1
            seed_this_rank(self.args.seed)
            if self.main:
                if overwrite:
                    self._clear_previous_run()
                os.makedirs(self.run_dir, exist_ok=True)
                with open(os.path.join(self.run_dir, "args.json"), "w") as f:
                    json.dump(plain(vars(self.args)), f, indent=1, sort_keys=True)
            val = self.evaluate_fn() if self.evaluate_fn else {}
            self._save_model(ckpt_name(0), 0, val.get("acc1"))
            self._save_resume(0)  # so a failure in epoch 1 can still be resumed
        if self.main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(log_dir=self.tb_dir, purge_step=start)
        self._epoch_start = time.time()
        return start

    def _clear_previous_run(self):
        """--overwrite: remove the old run's files, so no checkpoint, log line or resume state of it survives."""
        for name in os.listdir(self.run_dir) if os.path.isdir(self.run_dir) else []:
            if (CKPT_RE.match(name) or name.endswith(("_best.pth", "_last.pth"))
                    or name in (RESUME_FILE, "log.txt", "args.json")):
                os.remove(os.path.join(self.run_dir, name))
        shutil.rmtree(self.tb_dir, ignore_errors=True)

    def _load_resume(self, path):
        ckpt = load_checkpoint(path)
        if ckpt.get("arch") != self.args.model:
            raise UserError(f"{path} belongs to a {ckpt.get('arch')} run, not {self.args.model}.")
        current = plain(vars(self.args))
        changes = changed_args(ckpt.get("args") or {}, current)
        saved_world = len(ckpt.get("rng_ranks") or [ckpt.get("rng")])   # one RNG state per process
        if saved_world != get_world_size():                             # the global batch would change
            changes["processes"] = (saved_world, get_world_size())
        if changes:
            listed = describe_changes(changes, flags=current)
            if not getattr(self.args, "allow_arg_changes", False):
                raise UserError(f"--resume of {self.run_dir} with flags that differ from the run's: {listed}. "
                                "They would silently change its schedule, stages or data. Pass the run's flags "
                                "(see its args.json), --allow_arg_changes to continue anyway (recorded in "
                                "log.txt), or --overwrite to start again.")
            self._log(f"warning: resuming with changed flags: {listed}")
            if self.main:
                with open(os.path.join(self.run_dir, "log.txt"), "a") as f:
                    f.write(json.dumps({"resumed_after_epoch": ckpt["epoch"], "changed_args": changes}) + "\n")
        unwrap(self.model).load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        for key, obj in self.state.items():
            if key in ckpt["state"]:
                obj.load_state_dict(ckpt["state"][key])
            elif hasattr(obj, "infer_state"):  # an entry newer than the resume file
                obj.infer_state(ckpt["epoch"])
            else:
                raise UserError(f"{path} lacks the {key!r} state this run needs; it was written by other code. "
                                "Start again with --overwrite.")
        self._restore_rng(ckpt)
        self.best_acc = ckpt["best_acc"]
        return ckpt["epoch"] + 1

    def _restore_rng(self, ckpt):
        """This rank's RNG state; a rank the saving run did not have starts its own stream from --seed."""
        states, rank = ckpt.get("rng_ranks") or [ckpt["rng"]], get_rank()
        if rank < len(states):
            set_rng_state(states[rank])
        else:
            seed_this_rank(self.args.seed)

    # ------------------------------------------------------------- per epoch
    def end_epoch(self, epoch, lr, train, val, extra_log=None):
        """Log the epoch, then write the epoch's checkpoints and the resume state."""
        seconds = time.time() - self._epoch_start
        improved = self.best_acc is None or val["acc1"] > self.best_acc
        self.best_acc = val["acc1"] if improved else self.best_acc
        record = {"epoch": epoch, "lr": lr, **{f"train_{k}": v for k, v in train.items()},
                  **{f"val_{k}": v for k, v in val.items()}, "best_acc": self.best_acc,
                  "seconds": round(seconds, 2), **(extra_log or {})}
        if self.main:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)
            self.writer.flush()
            with open(os.path.join(self.run_dir, "log.txt"), "a") as f:
                f.write(json.dumps(record) + "\n")
            self._log(f"epoch {epoch}/{self.args.epochs} | lr {lr:.5f} | train loss {train['loss']:.4f} "
                      f"acc {train['acc1']:.2f} | val loss {val['loss']:.4f} acc {val['acc1']:.2f} "
                      f"| best {self.best_acc:.2f} | {seconds:.1f}s")
        if epoch % self.args.save_freq == 0:
            self._save_model(ckpt_name(epoch), epoch, val["acc1"])
        if improved:
            self._save_model(f"{self.args.model}_best.pth", epoch, val["acc1"])
        self._save_resume(epoch)
        self._epoch_start = time.time()

    def finish(self, epoch, accuracy):
        self._save_model(f"{self.args.model}_last.pth", epoch, accuracy)
        if self.writer:
            self.writer.close()
        self._log(f"done: best val acc {self.best_acc:.2f}; checkpoints in {self.run_dir}")
        barrier()  # no rank returns before rank 0 has written the last files

    def last_good_checkpoint(self):
        found = list_checkpoints(self.run_dir)
        return found[max(found)] if found else None

    # -------------------------------------------------------------- writing
    def _save_model(self, filename, epoch, accuracy):
        if self.main:
            ckpt = model_checkpoint(self.model, epoch, accuracy, self.args.model, self.args.dataset, self.args)
            save_atomic(ckpt, os.path.join(self.run_dir, filename))

    def _save_resume(self, epoch):
        rngs = all_gather_objects(rng_state())  # a collective: every rank takes part
        if self.main:
            extra = {"rng_ranks": rngs} if len(rngs) > 1 else {}
            save_atomic({"epoch": epoch, "arch": self.args.model, "model": model_state(self.model),
                         "optimizer": self.optimizer.state_dict(),
                         "state": {key: obj.state_dict() for key, obj in self.state.items()},
                         "rng": rngs[0], **extra, "best_acc": self.best_acc, "args": plain(vars(self.args))},
                        os.path.join(self.run_dir, RESUME_FILE))

    def _log(self, message):
        if self.main:
            tqdm.write(message)


def fit(run, optimizer, loader_for, compute_loss, lr_at, device, start, before_epoch=None, progress=True):
    """The epoch loop: schedule, train, evaluate, log and checkpoint; returns the last val metrics.

    `loader_for(epoch)` gives the epoch's training loader, `before_epoch(epoch)`
    runs first (CTC's stage switch). A NaN/inf loss stops the run with a message
    naming the epoch, step and the last good checkpoint, which stays untouched.
    """
    args, val = run.args, None
    epochs = range(start, args.epochs + 1)
    if not epochs:
        run._log(f"{run.run_dir} already finished its {args.epochs} epochs; nothing to do.")
        return None
    for epoch in tqdm(epochs, desc="epochs", initial=start - 1, total=args.epochs,
                      disable=not (progress and run.main), dynamic_ncols=True):
        if before_epoch:
            before_epoch(epoch)
        lr = lr_at(epoch)
        set_lr(optimizer, lr)
        try:
            train = train_one_epoch(run.model, loader_for(epoch), optimizer, compute_loss, device, epoch,
                                    progress=progress and run.main, amp=bool(getattr(args, "amp", False)),
                                    print_freq=getattr(args, "print_freq", 0) if run.main else 0)
        except NonFiniteLossError as err:
            raise UserError(f"{err} Training stopped without saving this epoch; the last good checkpoint is "
                            f"{run.last_good_checkpoint()} and {RESUME_FILE} holds the state after epoch "
                            f"{epoch - 1}. Check the data, or lower the learning rate and continue with --resume "
                            "--allow_arg_changes (or start again with --overwrite).")
        val = run.evaluate_fn()
        run.end_epoch(epoch, lr, train, val)
    run.finish(args.epochs, val["acc1"])
    return val
