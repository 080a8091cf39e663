"""A training run, from start or resume to its last checkpoint: `train_run` opens its folder (`TrainingRun`:
checkpoints, exact resume, TensorBoard and the epoch log) and runs the epochs (`fit`).

    run = train_run(config, loop, flags, name, model, optimizer, train_set, val_set, compute_loss, device)

What `train_run` does with a `TrainingRun`:

    run = TrainingRun(config, flags, name, model, optimizer, state={"criterion": crd})
    start = run.prepare()            # fresh run (writes ckpt_epoch_0) or --resume
    for epoch in range(start, config.epochs + 1):
        ... train, evaluate ...
        run.end_epoch(epoch, lr, train_metrics, val_metrics)
    run.finish()

Files in `<model_path>/<name>/`: `ckpt_epoch_<E>.pth` every `save_freq` epochs and
`ckpt_epoch_0.pth` (the initialisation), `<arch>_best.pth`, `<arch>_last.pth`,
`resume.pth` (everything needed to continue exactly: model, optimizer, the extra
`state` objects, RNG; rewritten every epoch), `args.json` and `log.txt` (one JSON
line per epoch, each carrying its epoch). TensorBoard events go to `<tb_path>/<name>/`.
`--run_dir` names the folder explicitly instead (e.g. to continue a run with a new
learning rate, which is part of the derived name).

What a crash or kill leaves (docs/run_folder.md): every file is written to a `.tmp_*`
name and renamed, stale temporaries are removed at start-up, a resume drops the log
lines past the state it resumes from, and finishing is idempotent (`--resume` of a
finished run writes any missing `<arch>_last.pth` / `<arch>_best.pth`).

Under torchrun every rank runs the same TrainingRun; rank 0 alone writes files and
prints, every rank reads resume.pth (which holds each rank's RNG state).
"""
import contextlib
import os
import shutil
import time
from dataclasses import dataclass

from tqdm import tqdm

from helper.core.checkpoint import (CKPT_LIKE_RE, atomic_write, changed_flags, ckpt_name, describe_changes,
                                    list_checkpoints, load_checkpoint, model_checkpoint, model_state, plain,
                                    save_atomic, unwrap, write_flags)
from helper.core.distributed import (all_gather_objects, barrier, get_rank, get_world_size, is_main_process,
                                     seed_this_rank)
from helper.core.errors import UserError
from helper.core.protocol import LEGACY_ARGS, RESUME_FREE_ARGS, RUN_NAME_ARGS
from helper.core.seed import rng_state, set_rng_state
from helper.core.writes import guarded_write
from helper.train.loops import NonFiniteLossError, train_one_epoch
from helper.train.run_folder import (FLAGS_FILE, LOG_FILE, RESUME_FILE, append_log_line,
                                     check_writable, continue_command, log_lines_through, read_log,
                                     move_results_aside, remove_stale_temporaries, run_lock, run_record, similar_runs,
                                     tb_dir)
from helper.train.schedule import ScheduleConfig, make_lr_schedule, set_lr
from helper.train.setup import LoaderConfig, train_loader_for, validation

def changed_args(saved, current):
    """{flag: (saved, current)} for the flags whose change would alter a resumed run's trajectory.

    --epochs may grow under step decay (--lr_decay_epochs), whose learning rates do not
    depend on the run length; under cosine annealing it reshapes the whole schedule.
    """
    free = RESUME_FREE_ARGS | ({"epochs"} if current.get("lr_decay_epochs") else set())
    return changed_flags({**LEGACY_ARGS, **saved}, current, free)


@dataclass(frozen=True)
class RunConfig:
    """Where a training run's files go, how it starts (fresh, resumed, overwritten) and how long it runs."""
    arch: str                       # --model, recorded in every checkpoint
    dataset: str
    epochs: int
    learning_rate: float            # a NaN stop suggests continuing at half of it
    seed: int
    note: str
    save_freq: int                  # write ckpt_epoch_<E>.pth every this many epochs
    model_path: str                 # run folders are created under it, named by the script
    tb_path: str
    script: str                     # the script training it (train_vanilla.py, ...), recorded in args.json
    command_line: tuple | None = None   # its argv as typed, for the command that continues the run; None: unknown
    run_dir: str | None = None      # the run folder itself, instead of <model_path>/<name>
    resume: bool = False
    overwrite: bool = False
    allow_arg_changes: bool = False


@dataclass(frozen=True)
class LoopConfig:
    """How a run's epochs go: its learning-rate schedule, its loaders, bf16 autocast and what is printed."""
    schedule: ScheduleConfig
    loader: LoaderConfig
    amp: bool = False               # bf16 autocast of forward and loss (CUDA only)
    progress: bool = True           # tqdm bars
    print_freq: int = 0             # also one printed line every this many steps; 0 = off


class TrainingRun:
    def __init__(self, config, flags, name, model, optimizer, state=None, evaluate_fn=None):
        """`config`: the RunConfig; `flags`: the run's flags as a plain dict (vars(args)), recorded in
        the run folder, in every checkpoint and in resume.pth, and compared on --resume."""
        self.config = config
        self.flags = plain(flags)
        self.name = name
        self.model = model
        self.optimizer = optimizer
        self.state = state or {}
        self.evaluate_fn = evaluate_fn
        self.run_dir = config.run_dir or os.path.join(config.model_path, name)
        self.tb_dir = tb_dir(config.tb_path, self.run_dir)
        self.best_acc = None
        self.best_epoch = None
        self.saved_epoch = None         # the epoch resume.pth on disk holds
        self.main = is_main_process()
        self.writer = None
        self._epoch_start = time.time()

    # ----------------------------------------------------------------- start
    @contextlib.contextmanager
    def locked(self):
        """Hold the run folder's lock (`train.lock`) around `prepare` and the epochs: a second trainer of the
        folder, a new run or --resume, stops before touching anything, naming this process. Rank 0 alone
        locks under torchrun. A folder created only to hold the lock is removed again if nothing was written."""
        if not self.main:
            yield
            return
        created = not os.path.isdir(self.run_dir)
        try:
            with run_lock(self.run_dir):
                yield
        finally:
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(self.run_dir)      # only when empty

    def prepare(self):
        """Create the folder or resume from it; return the first epoch to train."""
        resume_path = os.path.join(self.run_dir, RESUME_FILE)
        existing = list_checkpoints(self.run_dir)
        resuming = self.config.resume and os.path.isfile(resume_path)
        if self.config.resume and not existing and not resuming:
            self._no_run_to_resume()
        if self.main:
            for name in remove_stale_temporaries(self.run_dir):
                self.log(f"removed {name}, left in {self.run_dir} by an interrupted save")
            check_writable((self.run_dir, self.tb_dir))
        barrier()  # every rank has looked at the folder before rank 0 writes to it
        if resuming:
            start = self._load_resume(resume_path)
            best = "none yet" if self.best_acc is None else f"{self.best_acc:.2f}"
            self.log(f"resuming {self.run_dir} at epoch {start} (best so far: {best})")
        else:
            overwrite = self.config.overwrite
            if self.config.resume and list(existing) == [0]:
                # Stopped between the initial checkpoint and the first resume.pth: nothing trained yet.
                self.log(f"{self.run_dir} holds only the initialisation; starting the run again")
                overwrite = True
            if existing and not overwrite:
                if self.config.resume:
                    raise UserError(f"run folder {self.run_dir} holds {len(existing)} checkpoints but no "
                                    f"{RESUME_FILE} to continue from (a run of other code?); pass --overwrite "
                                    "to start it again, or another --note.")
                raise UserError(f"run folder {self.run_dir} already holds {len(existing)} checkpoints; pass "
                                "--resume to continue that run, --overwrite to start it again, or another --note.")
            start = 1
            seed_this_rank(self.config.seed)
            if self.main:
                if overwrite:
                    self._clear_previous_run()
                path = os.path.join(self.run_dir, FLAGS_FILE)
                self._guarded(path, lambda: write_flags(path, run_record(self.config.script, self.flags)))
            val = self.evaluate_fn() if self.evaluate_fn else {}
            self._save_model(ckpt_name(0), 0, val.get("acc1"))
            self._save_resume(0)  # so a failure in epoch 1 can still be resumed
        if self.main:
            from torch.utils.tensorboard import SummaryWriter
            self._guarded(self.tb_dir, lambda: setattr(self, "writer", SummaryWriter(log_dir=self.tb_dir,
                                                                                     purge_step=start)))
        self._epoch_start = time.time()
        return start

    def _clear_previous_run(self):
        """--overwrite: remove the old run's files, so no checkpoint, log line or resume state of it survives,
        and move its sweeps' results aside, so none of their rows is taken for the new run's."""
        aside, moved = move_results_aside(self.run_dir)
        if moved:
            self.log(f"moved the old run's sweep results ({', '.join(moved)}) to {aside}: they were computed "
                      "from the checkpoints this run replaces")
        for name in os.listdir(self.run_dir) if os.path.isdir(self.run_dir) else []:
            if (CKPT_LIKE_RE.match(name) or name.endswith(("_best.pth", "_last.pth"))
                    or name in (RESUME_FILE, LOG_FILE, FLAGS_FILE)):
                os.remove(os.path.join(self.run_dir, name))
        shutil.rmtree(self.tb_dir, ignore_errors=True)

    def _load_resume(self, path):
        ckpt = load_checkpoint(path)
        if ckpt.get("arch") != self.config.arch:
            raise UserError(f"{path} belongs to a {ckpt.get('arch')} run, not {self.config.arch}.")
        current = self.flags
        changes = changed_args(ckpt.get("args") or {}, current)
        saved_world = len(ckpt.get("rng_ranks") or [ckpt.get("rng")])   # one RNG state per process
        if saved_world != get_world_size():                             # the global batch would change
            changes["processes"] = (saved_world, get_world_size())
        if changes:
            listed = describe_changes(changes, flags=current)
            if not self.config.allow_arg_changes:
                raise UserError(f"--resume of {self.run_dir} with flags that differ from the run's: {listed}. "
                                "They would silently change its schedule, stages or data. Pass the run's flags "
                                f"(see its {FLAGS_FILE}), --allow_arg_changes to continue anyway (recorded in "
                                "log.txt), or --overwrite to start again.")
            self.log(f"warning: resuming with changed flags: {listed}")
        if self.main:
            self._trim_log(ckpt["epoch"])
            if changes:
                self._append_log({"resumed_after_epoch": ckpt["epoch"], "changed_args": changes})
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
        self.best_epoch = ckpt.get("best_epoch")
        self.saved_epoch = ckpt["epoch"]
        return ckpt["epoch"] + 1

    def _restore_rng(self, ckpt):
        """This rank's RNG state; a rank the saving run did not have starts its own stream from --seed."""
        states, rank = ckpt.get("rng_ranks") or [ckpt["rng"]], get_rank()
        if rank < len(states):
            set_rng_state(states[rank])
        else:
            seed_this_rank(self.config.seed)

    # ------------------------------------------------------------- per epoch
    def end_epoch(self, epoch, lr, train, val):
        """Log the epoch, then write the epoch's checkpoints and the resume state."""
        seconds = time.time() - self._epoch_start
        improved = self.best_acc is None or val["acc1"] > self.best_acc
        if improved:
            self.best_acc, self.best_epoch = val["acc1"], epoch
        record = {"epoch": epoch, "lr": lr, **{f"train_{k}": v for k, v in train.items()},
                  **{f"val_{k}": v for k, v in val.items()}, "best_acc": self.best_acc,
                  "seconds": round(seconds, 2)}
        if self.main:
            self._guarded(self.tb_dir, lambda: self._board(record))
            self._append_log(record)
            self.log(f"epoch {epoch}/{self.config.epochs} | lr {lr:.5f} | train loss {train['loss']:.4f} "
                      f"acc {train['acc1']:.2f} | val loss {val['loss']:.4f} acc {val['acc1']:.2f} "
                      f"| best {self.best_acc:.2f} | {seconds:.1f}s")
        if epoch % self.config.save_freq == 0:
            self._save_model(ckpt_name(epoch), epoch, val["acc1"])
        if improved:
            self._save_model(f"{self.config.arch}_best.pth", epoch, val["acc1"])
        self._save_resume(epoch)
        self._epoch_start = time.time()

    def _board(self, record):
        """The epoch's numbers as TensorBoard scalars, flushed."""
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key.replace("_", "/", 1), value, record["epoch"])
        self.writer.flush()

    def finish(self, epoch, accuracy):
        self._save_model(f"{self.config.arch}_last.pth", epoch, accuracy)
        if self.writer:
            self.writer.close()
        self.log(f"done: best val acc {self.best_acc:.2f}; checkpoints in {self.run_dir}")
        barrier()  # no rank returns before rank 0 has written the last files

    def complete_finished(self):
        """--resume of a run whose training is complete: write a missing `<arch>_last.pth` (the weights
        resume.pth holds) or `<arch>_best.pth` (from them or the best epoch's checkpoint), so finishing
        is idempotent even after a kill between the last resume.pth and the final files."""
        last, best = (os.path.join(self.run_dir, f"{self.config.arch}_{kind}.pth") for kind in ("last", "best"))
        if not (os.path.isfile(last) and os.path.isfile(best)):
            accuracy = (self.evaluate_fn() if self.evaluate_fn else {}).get("acc1")
            if not os.path.isfile(last):
                self._save_model(os.path.basename(last), self.saved_epoch, accuracy)
                self.log(f"wrote the missing {last} from {RESUME_FILE} (epoch {self.saved_epoch})")
            if not os.path.isfile(best):
                self._restore_best(best, accuracy)
        if self.writer:
            self.writer.close()
        barrier()

    def _restore_best(self, best, accuracy):
        epoch = self.best_epoch if self.best_epoch is not None else self._best_epoch_from_log()
        source = os.path.join(self.run_dir, ckpt_name(epoch)) if epoch is not None else None
        if epoch == self.saved_epoch or (accuracy is not None and accuracy == self.best_acc):
            self._save_model(os.path.basename(best), self.saved_epoch, accuracy)
        elif source and os.path.isfile(source):
            if self.main:
                with open(source, "rb") as saved:
                    self._write(best, lambda f: shutil.copyfileobj(saved, f))
        else:
            self.log(f"warning: {best} is missing and cannot be recreated: the best epoch "
                      f"({epoch if epoch is not None else 'unknown'}) has no ckpt_epoch file in {self.run_dir}.")
            return
        self.log(f"wrote the missing {best} (epoch {epoch if epoch is not None else self.saved_epoch})")

    def _best_epoch_from_log(self):
        """The epoch whose log line first reached the run's best accuracy (resume files without 'best_epoch')."""
        for record in read_log(self.run_dir):
            if record.get("val_acc1") == self.best_acc and "epoch" in record:
                return record["epoch"]
        return None

    def last_good_checkpoint(self):
        found = list_checkpoints(self.run_dir)
        return found[max(found)] if found else None

    # -------------------------------------------------------------- writing
    def _save_model(self, filename, epoch, accuracy):
        if self.main:
            ckpt = model_checkpoint(self.model, epoch, accuracy, self.config.arch, self.config.dataset, self.flags)
            self._save(ckpt, os.path.join(self.run_dir, filename))

    def _save_resume(self, epoch):
        rngs = all_gather_objects(rng_state())  # a collective: every rank takes part
        if self.main:
            extra = {"rng_ranks": rngs} if len(rngs) > 1 else {}
            state = {"epoch": epoch, "arch": self.config.arch, "model": model_state(self.model),
                     "optimizer": self.optimizer.state_dict(),
                     "state": {key: obj.state_dict() for key, obj in self.state.items()},
                     "rng": rngs[0], **extra, "best_acc": self.best_acc, "best_epoch": self.best_epoch,
                     "args": self.flags}
            self._save(state, os.path.join(self.run_dir, RESUME_FILE))
        self.saved_epoch = epoch

    def _save(self, obj, path):
        """`save_atomic(obj, path)`, a failure told as `_guarded` does."""
        self._guarded(path, lambda: save_atomic(obj, path))

    def _write(self, path, write):
        """`atomic_write(path, write)`, a failure told as `_guarded` does."""
        self._guarded(path, lambda: atomic_write(path, write))

    def _guarded(self, path, write):
        """Call `write()`, which writes `path`; a failed write (full disk, read-only folder, torch's writer
        failing) is one paragraph saying what is safe: every file of the run keeps its previous complete version."""
        held = (f"{RESUME_FILE} holds the state after epoch {self.saved_epoch}" if self.saved_epoch is not None
                else "no training was lost (none had been saved yet)")
        with guarded_write(path, safe=f"Nothing was lost: every file of {self.run_dir} is written to a temporary "
                                      "name and then renamed, so each still holds its previous complete version, "
                                      f"and {held}.",
                           then="Free space on that disk (or make the folder writable) and continue with --resume."):
            write()

    def _append_log(self, record):
        path = os.path.join(self.run_dir, LOG_FILE)
        self._guarded(path, lambda: append_log_line(path, record))

    def _trim_log(self, epoch):
        """Drop the log lines past `epoch` (written after the state being resumed), so no epoch repeats."""
        kept, dropped = log_lines_through(self.run_dir, epoch)
        if dropped:
            self._write(os.path.join(self.run_dir, LOG_FILE), lambda f: f.write(kept.encode()))
            self.log(f"{LOG_FILE}: dropped {dropped} lines past epoch {epoch}, the state resumed from")

    def _no_run_to_resume(self):
        """--resume, but the folder the flags name holds no run. Refuse when a run of this script and note
        exists that differs only in flags the folder name is built from (the user changed --learning_rate,
        say, and meant to resume it), listing what differs; otherwise start the run."""
        if self.config.run_dir:
            raise UserError(f"--resume was given, but --run_dir {self.run_dir} holds no run to resume (no "
                            f"{RESUME_FILE} and no checkpoints). Check the path, or drop --resume to start a new "
                            "run there.")
        current = self.flags
        similar = similar_runs(os.path.dirname(self.run_dir.rstrip(os.sep)), self.config.script, current,
                               changed_args)
        moved = [(path, changes) for path, changes in similar if set(changes) <= RUN_NAME_ARGS]
        if not moved:
            same_model = [os.path.basename(p) for p, changes in similar if "model" not in changes]
            self.log(f"--resume: {self.run_dir} holds no run yet; starting it"
                      + (f" (other runs of {self.config.arch} with this note, under other flags: "
                         f"{', '.join(same_model)})" if same_model else ""))
            return
        listing = " ".join(f"{path} ({describe_changes(changes, flags=current)})." for path, changes in moved)
        same_arch = [path for path, changes in moved if not {"model", "dataset"} & set(changes)]
        how = (f"To continue it with these flags: {self.continue_command(same_arch[0])}" if same_arch
               else f"To continue it, pass its --model and --dataset (see its {FLAGS_FILE}).")
        raise UserError(f"--resume was given, but {self.run_dir} holds no run to resume. A run of note "
                        f"{self.config.note!r} that differs only in flags the run-folder name is built from exists: "
                        f"{listing} {how} To start a new run instead, drop --resume.")

    def continue_command(self, run_dir, learning_rate=None):
        """The command that continues the run in `run_dir` with this command's flags (and `learning_rate`)."""
        return continue_command(self.config.script, self.config.command_line, run_dir, learning_rate)

    def log(self, message):
        """Print `message` once (rank 0), above any progress bar."""
        if self.main:
            tqdm.write(message)


def fit(run, loader_for, compute_loss, lr_at, device, start, before_epoch=None, progress=True, amp=False, print_freq=0):
    """The epoch loop: schedule, train, evaluate, log and checkpoint; returns the last val metrics.

    Trains `run.model` with `run.optimizer`; `loader_for(epoch)` gives the epoch's training loader,
    `before_epoch(epoch)` runs first (CTC's stage switch); `amp` and `print_freq` as in `train_one_epoch`.
    A NaN/inf loss stops the run with a message naming the epoch, step and the last
    good checkpoint, which stays untouched.
    """
    config, optimizer, val = run.config, run.optimizer, None
    epochs = range(start, config.epochs + 1)
    if not epochs:
        run.complete_finished()
        run.log(f"{run.run_dir} already finished its {config.epochs} epochs; nothing to do.")
        return None
    for epoch in tqdm(epochs, desc="epochs", initial=start - 1, total=config.epochs,
                      disable=not (progress and run.main), dynamic_ncols=True):
        if before_epoch:
            before_epoch(epoch)
        lr = lr_at(epoch)
        set_lr(optimizer, lr)
        try:
            train = train_one_epoch(run.model, loader_for(epoch), optimizer, compute_loss, device, epoch,
                                    progress=progress and run.main, amp=amp,
                                    print_freq=print_freq if run.main else 0)
        except NonFiniteLossError as err:
            raise UserError(f"{err} Training stopped without saving this epoch; the last good checkpoint is "
                            f"{run.last_good_checkpoint()} and {RESUME_FILE} holds the state after epoch "
                            f"{epoch - 1}. Check the data, or continue this run with a lower learning rate, e.g. "
                            f"half: {run.continue_command(run.run_dir, config.learning_rate / 2)} "
                            "(or start again with --overwrite).")
        val = run.evaluate_fn()
        run.end_epoch(epoch, lr, train, val)
    run.finish(config.epochs, val["acc1"])
    return val


def train_run(config, loop, flags, name, model, optimizer, train_set, val_set, compute_loss, device, state=None,
              loader_for=None, lr_phases=None, before_epoch=None):
    """Open (or resume) the run `name` and train it with `compute_loss` on `loop`'s schedule, validating every
    epoch on `val_set`; returns the finished `TrainingRun`.

    `config`: the `RunConfig`; `flags`: the run's flags as a dict, recorded and compared on --resume;
    `state`: further objects the run's resume file keeps (CTC's heads and memory, a regression head);
    `loader_for(epoch)`: the epoch's loader (default: `train_set` served by `loop.loader`); `lr_phases`:
    the schedule's phases (CTC's restart at stage two); `before_epoch(epoch)`: as in `fit`.
    """
    run = TrainingRun(config, flags, name, model, optimizer, state=state,
                      evaluate_fn=validation(loop.loader, model, val_set, device))
    with run.locked():
        start = run.prepare()
        fit(run, loader_for or train_loader_for(loop.loader, train_set, device), compute_loss,
            make_lr_schedule(loop.schedule, lr_phases), device, start, before_epoch=before_epoch,
            progress=loop.progress, amp=loop.amp, print_freq=loop.print_freq)
    return run
