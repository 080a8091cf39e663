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
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from crd import CRDLoss, InstanceDiscrimination, ITRDLoss, kd_loss
from dataset import DATASETS, build_transform, get_loader, same_classes
from dataset.variants import wrap_arrays
from helper.core.checkpoint import CheckpointError, unwrap
from helper.core.distributed import all_gather_cat, all_reduce_mean, is_main_process, shard_sampler
from helper.core.errors import UserError
from helper.train.setup import build_sgd, train_loader_for
from models import load_model


@dataclass(frozen=True)
class CTCConfig:
    """The stages, loss weights and heads of one CTC (or distillation) run: the flags of train_ctc.py."""
    stage_two_epoch: int            # last epoch of stage 1; 0 = no stage 1 (distillation from a teacher)
    alpha: float                    # weight of stage 1's instance discrimination
    beta: float                     # weight of stage 2's CRD / ITRD loss
    ce_weight: float
    kd_weight: float                # weight of Hinton KD on the frozen network's logits in stage 2
    kd_T: float
    weight_decay_coef: float        # stage 1 uses weight_decay x this
    stage_two_decay_rate: float     # stage 2's cosine restarts at this fraction of the learning rate
    update_memory_bank: bool        # fill both CRD memories at the switch
    train_projector: bool           # train stage 1's projector (original: fixed at its random init)
    instance_dim: int
    instance_t: float
    instance_m: float
    stage_two_loss: str             # "crd" or "itrd"
    contrast_feat_dim: int
    nce_k: int                      # CRD negatives per sample
    nce_t: float
    nce_m: float
    mode: str                       # CRD negatives: "exact" = other classes only, "relax" = any other sample
    lambda_corr: float
    lambda_mutual: float
    alpha_it: float

    def stage_of(self, epoch):
        """1 for the epochs up to --stage_two_epoch, 2 after."""
        return 1 if epoch <= self.stage_two_epoch else 2


def load_frozen_teacher(path, arch, device, flag="--teacher"):
    """(frozen network, checkpoint dict) of the teacher checkpoint `path` (`arch`: --teacher_model, for a
    checkpoint that does not record it); a checkpoint that does not load is a UserError naming `flag`."""
    try:
        teacher, ckpt = load_model(path, arch=arch, device=device)
    except CheckpointError as err:
        raise UserError(f"{flag}: {str(err).replace('--model', '--teacher_model')}") from None
    return freeze(teacher), (ckpt if isinstance(ckpt, dict) else {})


def load_teacher(path, arch, num_classes, dataset, kd_weight, device):
    """The external frozen network of --teacher `path` and its architecture name (`arch`: the one of a
    checkpoint that does not record it); checks KD's classes against those of `dataset`."""
    teacher, ckpt = load_frozen_teacher(path, arch, device)
    arch = ckpt.get("arch") or arch
    if kd_weight > 0 and teacher.num_classes != num_classes:
        raise UserError(f"--kd_weight {kd_weight} compares logits, but teacher {path} ({arch}) has "
                        f"{teacher.num_classes} classes and {dataset} has {num_classes}; use a teacher "
                        "trained on the same classes or --kd_weight 0 (feature distillation alone works).")
    taught_on = ckpt.get("dataset")
    if kd_weight > 0 and taught_on in DATASETS and not same_classes(taught_on, dataset):
        raise UserError(f"--kd_weight {kd_weight} compares logits class by class, but teacher {path} "
                        f"was trained on {taught_on}, whose classes are not those of {dataset} (the same "
                        "count is not enough); use a teacher of the same classes or --kd_weight 0.")
    return teacher, arch


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

    def __init__(self, config, loader, train_set, device=None):
        """`config`: the CTCConfig; `loader`: the LoaderConfig of both stages and the fill."""
        self.config, self.loader, self.device = config, loader, device
        self.stage_one = train_set  # variant "instance": (img, target, index)
        self.stage_two = train_set
        if config.stage_two_loss == "crd" and config.beta > 0:
            try:
                self.stage_two = wrap_arrays(train_set.data, train_set.targets, train_set.info,
                                             train_set.transform, "contrast", config.nce_k, config.mode)
            except UserError as err:
                raise UserError(f"--nce_k {config.nce_k} is too large for {train_set.info.name}: {err}") from None
        # The one-shot memory fill stores each image as it is: augmentation would only add noise.
        self.plain = wrap_arrays(train_set.data, train_set.targets, train_set.info,
                                 build_transform(train_set.info, "none"), "instance", 0, config.mode)
        self._loaders = {}

    def loader_for(self, epoch):
        """epoch -> the epoch's shuffled loader; order depends on (seed, epoch) only.

        Each stage's loader factory is built once: with --loader gpu it uploads its images.
        Only the current stage's is kept (epochs only move forward), so the device never
        holds the training set twice.
        """
        stage = self.config.stage_of(epoch)
        if stage not in self._loaders:
            self._loaders.clear()            # free stage 1's device copy before uploading stage 2's
            dataset = self.stage_one if stage == 1 else self.stage_two
            self._loaders[stage] = train_loader_for(self.loader, dataset, self.device)
        return self._loaders[stage](epoch)

    def fill_loader(self):
        """Unshuffled; under torchrun each rank embeds an equal (padded) share, gathered into every bank."""
        return get_loader(self.plain, max(self.loader.batch_size, 256), train=False,
                          num_workers=self.loader.num_workers, sampler=shard_sampler(self.plain, shuffle=False))


class CTCObjective:
    """Losses, frozen network and stage switch of one CTC (or distillation) run.

    model: the network being trained (possibly DDP-wrapped); frozen: the info bank
    (a copy of the bare `model` made here, when `teacher` is None) or the external teacher.
    config: the CTCConfig; sgd: the SGDConfig of the one optimiser (stage 1 scales its weight decay).
    """

    def __init__(self, config, sgd, model, n_data, device, teacher=None):
        self.config, self.sgd, self.model, self.device = config, sgd, model, device
        self.switch = SwitchState(config.stage_two_epoch)
        self.temporal = teacher is None
        self.frozen = freeze(copy.deepcopy(unwrap(model))) if self.temporal else teacher
        feat_s, feat_t = unwrap(model).feat_dim, self.frozen.feat_dim
        self.instance = InstanceDiscrimination(feat_s, n_data, config.instance_dim, config.instance_t,
                                               config.instance_m).to(device)
        # The original keeps the projector at its random init; without --train_projector it gets no
        # gradient at all (none accumulating unused in .grad, no backward work for it).
        self.instance.projector.requires_grad_(bool(config.train_projector))
        if config.stage_two_loss == "crd":
            self.criterion = CRDLoss(feat_s, feat_t, n_data, config.contrast_feat_dim, config.nce_k, config.nce_t,
                                     config.nce_m)
        else:
            self.criterion = ITRDLoss(feat_s, feat_t, config.lambda_corr, config.lambda_mutual, config.alpha_it)
        self.criterion.to(device)
        self.stage = config.stage_of(1)            # the first epoch's stage

    def head_parameters(self):
        """The trained parameters outside the model: the stage-2 heads (+ the projector if asked)."""
        params = list(self.criterion.parameters())
        if self.config.train_projector:
            params += list(self.instance.projector.parameters())
        return params

    def parameters(self):
        """What the one SGD optimiser trains: the model and the head parameters."""
        return list(self.model.parameters()) + self.head_parameters()

    def build_optimizer(self):
        """SGD over `parameters()`; under torchrun it first averages the heads' gradients over ranks
        (DDP averages the model's)."""
        return build_sgd(self.model.parameters(), self.sgd, weight_decay=self.initial_weight_decay(),
                         heads=self.head_parameters())

    def initial_weight_decay(self):
        c = self.config
        return self.sgd.weight_decay * (c.weight_decay_coef if c.stage_two_epoch > 0 else 1.0)

    def lr_phases(self, epochs):
        """make_lr_schedule phases of a run of `epochs`: cosine over stage 1, restart at
        stage_two_decay_rate * lr for stage 2.

        Without a stage 1 (plain distillation) stage 2 starts at the full learning rate.
        """
        s, lr = self.config.stage_two_epoch, self.sgd.learning_rate
        if s == 0:
            return [(1, epochs, lr)]
        return [(1, s, lr), (s + 1, epochs - s, lr * self.config.stage_two_decay_rate)]

    def state(self):
        """Objects TrainingRun saves in resume.pth and restores on --resume."""
        return {"frozen": self.frozen, "instance": self.instance, "criterion": self.criterion,
                "switch": self.switch}

    # ------------------------------------------------------------------ stages
    def before_epoch(self, epoch, optimizer, data):
        """Set the epoch's stage; at the first stage-2 epoch do the switch (also when resuming there).

        Whether the switch happened is saved, so it runs exactly once whatever the resume point.
        """
        self.stage = self.config.stage_of(epoch)
        if self.stage == 2 and not self.switch.done:
            self.start_stage_two(optimizer, data.fill_loader())
            self.switch.done = True
            if is_main_process() and self.config.stage_two_epoch > 0:
                self.explain_switch(epoch)

    def explain_switch(self, epoch):
        """Stage two changes the objective and the learning rate at once: say so where the loss curve jumps."""
        c = self.config
        against = "a frozen copy of the network as it is now" if self.temporal else "the --teacher network"
        print(f"stage two from epoch {epoch}: the loss is now cross-entropy + {format(c.beta, 'g')} x the "
              f"{c.stage_two_loss.upper()} loss against {against} (instance discrimination is dropped), and the "
              f"learning rate restarts at {format(c.stage_two_decay_rate, 'g')} x --learning_rate: the training "
              "loss jumps here by design.", file=sys.stderr, flush=True)

    def start_stage_two(self, optimizer, fill_loader):
        if self.temporal:
            self.frozen.load_state_dict(unwrap(self.model).state_dict())
        for group in optimizer.param_groups:
            group["weight_decay"] = self.sgd.weight_decay
        if self.config.update_memory_bank and isinstance(self.criterion, CRDLoss):
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
        loss, terms = self.config.ce_weight * ce, {"ce": ce.detach()}
        # The contrastive terms run in fp32 even under --amp: exp(<w, v> / 0.07) spans e^-14..e^14.
        feat = feats[-1].float()
        if self.stage == 1:
            if self.config.alpha > 0:
                with fp32():
                    term = self.instance(feat, idx, gather_fn=all_gather_cat)
                loss, terms["instance"] = loss + self.config.alpha * term, term.detach()
            return loss, logits, targets, terms
        with torch.no_grad():
            t_feats, t_logits = self.frozen(images, is_feat=True)
        if self.config.beta > 0:
            with fp32():
                term = self.stage_two_term(feat, t_feats[-1].float(), idx, batch[3] if len(batch) > 3 else None)
            loss, terms[self.config.stage_two_loss] = loss + self.config.beta * term, term.detach()
        if self.config.kd_weight > 0:
            term = kd_loss(logits, t_logits, self.config.kd_T)
            loss, terms["kd"] = loss + self.config.kd_weight * term, term.detach()
        return loss, logits, targets, terms

    def stage_two_term(self, f_s, f_t, idx, contrast_idx):
        """f_s: (B, feat_s) current, f_t: (B, feat_t) frozen -> scalar CRD or ITRD loss."""
        if isinstance(self.criterion, CRDLoss):
            return self.criterion(f_s, f_t, idx, contrast_idx, gather_fn=all_gather_cat, reduce_fn=all_reduce_mean)
        if f_s.shape[0] < 2:  # ITRD standardises over the batch; a last batch of one carries no signal
            return f_s.sum() * 0.0
        return self.criterion(f_s, f_t)
