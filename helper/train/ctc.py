"""Contrastive Temporal Coding (CTC): the two training stages, the stage switch and the frozen network.

Stage 1 (epochs 1..s, s = --stage_two_epoch):
    loss = ce_weight * CE + alpha * instance discrimination of the penultimate feature,
    with weight decay `weight_decay * weight_decay_coef`.
Switch (start of epoch s+1, before any step; the model then equals the one saved
as ckpt_epoch_<s>): copy the model into the frozen "info bank" (the earlier
representation T1), restore the weight decay to `weight_decay` and, with
--update_memory_bank, fill both CRD memories in one unaugmented pass.
Stage 2 (epochs s+1..E):
    loss = ce_weight * CE + beta * CRD (or ITRD)(current feature, frozen feature)
           [+ kd_weight * KD(current logits, frozen logits)].

With --teacher the frozen network is an external checkpoint instead of the
snapshot (nothing is copied at the switch); with s = 0 this is plain
teacher -> student distillation (CRD / ITRD / KD) from the first epoch.

Which stage an epoch is in follows from the epoch alone, so --resume needs no
extra flag: everything else (frozen weights, heads, memories and Z, instance
bank, the optimiser's weight decay) is in resume.pth via `CTCObjective.state()`.

Under torchrun the model is DDP-wrapped, the frozen network is not (it has no
gradient), and the heads' gradients are averaged by an optimiser pre-step hook.
The memory banks stay identical on every rank: each momentum update (and the
memory fill) writes the embeddings and indices of the whole global batch,
gathered in rank order, and Z is fixed from the global batch mean. With equal
per-rank batches (DistributedSampler pads) one step on N ranks therefore equals
one single-process step on the concatenated global batch, BatchNorm aside (each
rank normalises its own part unless --sync_bn). This is exact for CRD's negatives
because they come with each sample from the contrast data set; ContrastMemory's
own `sample_indices` (used only when no contrast indices are given, never by
train_ctc.py) draws from each rank's RNG and so matches a single process in
distribution, not number for number. ITRD's batch statistics are per rank.
"""
import contextlib
import copy
import sys

import torch
import torch.nn.functional as F

from crd import CRDLoss, InstanceDiscrimination, ITRDLoss, kd_loss
from dataset import DATASETS, build_transform, get_loader, same_classes
from dataset.variants import wrap_arrays
from helper.core.checkpoint import CheckpointError, unwrap
from models import load_model
from helper.core.distributed import all_gather_cat, all_reduce_mean, average_gradients, is_main_process, shard_sampler
from helper.core.errors import UserError
from helper.train.setup import build_sgd, train_loader_for


def check_ctc_args(args):
    """Reject bad stage / weight settings before any data is read."""
    s, epochs = args.stage_two_epoch, args.epochs
    if not 0 <= s < epochs:
        raise UserError(f"--stage_two_epoch must lie in [0, --epochs) so that stage 2 has at least one epoch "
                        f"(0 only with --teacher); got --stage_two_epoch {s} with --epochs {epochs}.")
    if s == 0 and not args.teacher:
        raise UserError("--stage_two_epoch 0 skips stage 1, so there is no earlier representation to copy; "
                        "pass --teacher PATH for plain distillation, or a stage-two epoch of at least 1 "
                        "(paper: 200 of 300).")
    for name in ("alpha", "beta", "kd_weight", "ce_weight", "weight_decay_coef", "stage_two_decay_rate"):
        if not 0 <= getattr(args, name) < float("inf"):     # also refuses NaN
            raise UserError(f"--{name} must be a finite number, not negative; got {getattr(args, name)}.")
    if not 0 < args.kd_T < float("inf"):
        raise UserError(f"--kd_T must be a positive finite number, got {args.kd_T}.")
    if args.lr_decay_epochs and s > 0:
        print(f"note: --lr_decay_epochs gives one step schedule over all {epochs} epochs; stage 2 does not restart "
              "at --stage_two_decay_rate x the learning rate as in the paper's two-phase cosine.", file=sys.stderr)


def load_teacher(args, num_classes, device):
    """The external frozen network of --teacher and its architecture name; checks KD's class count."""
    try:
        teacher, ckpt = load_model(args.teacher, arch=args.teacher_model, device=device)
    except CheckpointError as err:
        raise UserError(f"--teacher: {str(err).replace('--model', '--teacher_model')}") from None
    arch = (ckpt.get("arch") if isinstance(ckpt, dict) else None) or args.teacher_model
    if args.kd_weight > 0 and teacher.num_classes != num_classes:
        raise UserError(f"--kd_weight {args.kd_weight} compares logits, but teacher {args.teacher} ({arch}) has "
                        f"{teacher.num_classes} classes and {args.dataset} has {num_classes}; use a teacher "
                        "trained on the same classes or --kd_weight 0 (feature distillation alone works).")
    taught_on = ckpt.get("dataset") if isinstance(ckpt, dict) else None
    if args.kd_weight > 0 and taught_on in DATASETS and not same_classes(taught_on, args.dataset):
        raise UserError(f"--kd_weight {args.kd_weight} compares logits class by class, but teacher {args.teacher} "
                        f"was trained on {taught_on}, whose classes are not those of {args.dataset} (the same "
                        "count is not enough); use a teacher of the same classes or --kd_weight 0.")
    return freeze(teacher), arch


def freeze(net):
    """Eval mode and no gradients: the frozen network is a fixed target, never in the optimiser."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def fp32():
    """Autocast switched off: the losses inside see and produce float32."""
    return torch.autocast("cuda", enabled=False) if torch.cuda.is_available() else contextlib.nullcontext()


class SwitchState:
    """Whether the stage switch (snapshot, weight decay, memory fill) has run; saved in resume.pth."""

    def __init__(self, stage_two_epoch):
        self.stage_two_epoch, self.done = stage_two_epoch, False

    def infer_state(self, saved_epoch):
        """For resume files written before this flag existed: the switch ran iff stage 2 had started."""
        self.done = saved_epoch > self.stage_two_epoch

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, state):
        self.done = bool(state["done"])


class CTCData:
    """The training views of one data set: stage 1, stage 2 and the unaugmented memory fill.

    Stage 1 needs the index (instance bank), stage 2 with CRD also the k
    negatives (`contrast` items, k = --nce_k, --mode); all share one array.
    Building the contrast view checks --nce_k against the negatives available.
    """

    def __init__(self, args, train_set, device=None):
        self.args, self.device = args, device
        self.stage_one = train_set  # variant "instance": (img, target, index)
        self.stage_two = train_set
        if args.stage_two_loss == "crd" and args.beta > 0:
            try:
                self.stage_two = wrap_arrays(train_set.data, train_set.targets, train_set.info,
                                             train_set.transform, "contrast", args.nce_k, args.mode)
            except UserError as err:
                raise UserError(f"--nce_k {args.nce_k} is too large for {args.dataset}: {err}") from None
        # The one-shot memory fill stores each image as it is: augmentation would only add noise.
        self.plain = wrap_arrays(train_set.data, train_set.targets, train_set.info,
                                 build_transform(train_set.info, "none"), "instance", 0, args.mode)
        self._loaders = {}

    def loader_for(self, epoch):
        """epoch -> the epoch's shuffled loader; order depends on (seed, epoch) only.

        Each stage's loader factory is built once: with --loader gpu it uploads its images.
        Only the current stage's is kept (epochs only move forward), so the device never
        holds the training set twice.
        """
        stage = 1 if epoch <= self.args.stage_two_epoch else 2
        if stage not in self._loaders:
            self._loaders.clear()            # free stage 1's device copy before uploading stage 2's
            dataset = self.stage_one if stage == 1 else self.stage_two
            self._loaders[stage] = train_loader_for(self.args, dataset, self.device)
        return self._loaders[stage](epoch)

    def fill_loader(self):
        """Unshuffled; under torchrun each rank embeds an equal (padded) share, gathered into every bank."""
        return get_loader(self.plain, max(self.args.batch_size, 256), train=False,
                          num_workers=self.args.num_workers, sampler=shard_sampler(self.plain, shuffle=False))


class CTCObjective:
    """Losses, frozen network and stage switch of one CTC (or distillation) run.

    model: the network being trained (possibly DDP-wrapped); frozen: the info bank
    (a copy of the bare `model` made here, when `teacher` is None) or the external teacher.
    """

    def __init__(self, args, model, n_data, device, teacher=None):
        self.args, self.model, self.device = args, model, device
        self.switch = SwitchState(args.stage_two_epoch)
        self.temporal = teacher is None
        self.frozen = freeze(copy.deepcopy(unwrap(model))) if self.temporal else teacher
        feat_s, feat_t = unwrap(model).feat_dim, self.frozen.feat_dim
        self.instance = InstanceDiscrimination(feat_s, n_data, args.instance_dim, args.instance_t,
                                               args.instance_m).to(device)
        # The original keeps the projector at its random init; without --train_projector it gets no
        # gradient at all (none accumulating unused in .grad, no backward work for it).
        self.instance.projector.requires_grad_(bool(args.train_projector))
        if args.stage_two_loss == "crd":
            self.criterion = CRDLoss(feat_s, feat_t, n_data, args.contrast_feat_dim, args.nce_k, args.nce_t,
                                     args.nce_m)
        else:
            self.criterion = ITRDLoss(feat_s, feat_t, args.lambda_corr, args.lambda_mutual, args.alpha_it)
        self.criterion.to(device)
        self.stage = 1 if args.stage_two_epoch > 0 else 2

    def head_parameters(self):
        """The trained parameters outside the model: the stage-2 heads (+ the projector if asked)."""
        params = list(self.criterion.parameters())
        if self.args.train_projector:
            params += list(self.instance.projector.parameters())
        return params

    def parameters(self):
        """What the one SGD optimiser trains: the model and the head parameters."""
        return list(self.model.parameters()) + self.head_parameters()

    def build_optimizer(self):
        """SGD over `parameters()`; under torchrun it first averages the heads' gradients over ranks
        (DDP averages the model's)."""
        optimizer = build_sgd(self.parameters(), self.args, weight_decay=self.initial_weight_decay())
        heads = self.head_parameters()
        optimizer.register_step_pre_hook(lambda *_: average_gradients(heads))
        return optimizer

    def initial_weight_decay(self):
        return self.args.weight_decay * (self.args.weight_decay_coef if self.args.stage_two_epoch > 0 else 1.0)

    def lr_phases(self):
        """make_lr_schedule phases: cosine over stage 1, restart at stage_two_decay_rate * lr for stage 2.

        Without a stage 1 (plain distillation) stage 2 starts at the full learning rate.
        """
        a, s, lr = self.args, self.args.stage_two_epoch, self.args.learning_rate
        if s == 0:
            return [(1, a.epochs, lr)]
        return [(1, s, lr), (s + 1, a.epochs - s, lr * a.stage_two_decay_rate)]

    def state(self):
        """Objects TrainingRun saves in resume.pth and restores on --resume."""
        return {"frozen": self.frozen, "instance": self.instance, "criterion": self.criterion,
                "switch": self.switch}

    # ------------------------------------------------------------------ stages
    def before_epoch(self, epoch, optimizer, data):
        """Set the epoch's stage; at the first stage-2 epoch do the switch (also when resuming there).

        Whether the switch happened is saved, so it runs exactly once whatever the resume point.
        """
        self.stage = 1 if epoch <= self.args.stage_two_epoch else 2
        if self.stage == 2 and not self.switch.done:
            self.start_stage_two(optimizer, data.fill_loader())
            self.switch.done = True
            if is_main_process() and self.args.stage_two_epoch > 0:
                self.explain_switch(epoch)

    def explain_switch(self, epoch):
        """Stage two changes the objective and the learning rate at once: say so where the loss curve jumps."""
        a = self.args
        against = "a frozen copy of the network as it is now" if self.temporal else "the --teacher network"
        print(f"stage two from epoch {epoch}: the loss is now cross-entropy + {format(a.beta, 'g')} x the "
              f"{a.stage_two_loss.upper()} loss against {against} (instance discrimination is dropped), and the "
              f"learning rate restarts at {format(a.stage_two_decay_rate, 'g')} x --learning_rate: the training "
              "loss jumps here by design.", file=sys.stderr, flush=True)

    def start_stage_two(self, optimizer, fill_loader):
        if self.temporal:
            self.frozen.load_state_dict(unwrap(self.model).state_dict())
        for group in optimizer.param_groups:
            group["weight_decay"] = self.args.weight_decay
        if self.args.update_memory_bank and isinstance(self.criterion, CRDLoss):
            self.fill_memory(fill_loader)

    @torch.no_grad()
    def fill_memory(self, loader):
        """Overwrite both CRD memories (momentum 0) with the embeddings of every training image."""
        was_training = self.model.training
        self.model.eval()  # no BatchNorm statistics are updated by this pass
        for images, _, idx in loader:
            images, idx = images.to(self.device), idx.to(self.device)
            self.criterion.refresh_memory(unwrap(self.model).penultimate(images), self.frozen.penultimate(images),
                                          idx, gather_fn=all_gather_cat)
        self.model.train(was_training)

    def compute_loss(self, batch):
        """batch: (images, targets, index[, contrast_idx]) on the device -> (loss, logits, targets, terms)."""
        images, targets, idx = batch[0], batch[1], batch[2]
        feats, logits = self.model(images, is_feat=True)
        ce = F.cross_entropy(logits, targets)
        loss, terms = self.args.ce_weight * ce, {"ce": ce.detach()}
        # The contrastive terms run in fp32 even under --amp: exp(<w, v> / 0.07) spans e^-14..e^14.
        feat = feats[-1].float()
        if self.stage == 1:
            if self.args.alpha > 0:
                with fp32():
                    term = self.instance(feat, idx, gather_fn=all_gather_cat)
                loss, terms["instance"] = loss + self.args.alpha * term, term.detach()
            return loss, logits, targets, terms
        with torch.no_grad():
            t_feats, t_logits = self.frozen(images, is_feat=True)
        if self.args.beta > 0:
            with fp32():
                term = self.stage_two_term(feat, t_feats[-1].float(), idx, batch[3] if len(batch) > 3 else None)
            loss, terms[self.args.stage_two_loss] = loss + self.args.beta * term, term.detach()
        if self.args.kd_weight > 0:
            term = kd_loss(logits, t_logits, self.args.kd_T)
            loss, terms["kd"] = loss + self.args.kd_weight * term, term.detach()
        return loss, logits, targets, terms

    def stage_two_term(self, f_s, f_t, idx, contrast_idx):
        """f_s: (B, feat_s) current, f_t: (B, feat_t) frozen -> scalar CRD or ITRD loss."""
        if isinstance(self.criterion, CRDLoss):
            return self.criterion(f_s, f_t, idx, contrast_idx, gather_fn=all_gather_cat, reduce_fn=all_reduce_mean)
        if f_s.shape[0] < 2:  # ITRD standardises over the batch; a last batch of one carries no signal
            return f_s.sum() * 0.0
        return self.criterion(f_s, f_t)
