"""Frozen-backbone feature extraction and a small on-disk cache of the results.

Transfer (linear probe), retrieval metrics and MINE all need the same thing: the
features a checkpoint gives a whole data set. `extract_features` computes them once
in eval mode; `cached_features` stores them so a sweep over checkpoints can re-run
without touching the images again. The sweeps get them through one call,

    features, labels = split_features(lambda: model, dataset, split, ckpt_path, config, device, layer=-1)

with a `FeatureConfig` (data folder, loader, batch size, speed, cache) built once in the script's main.
"""
import contextlib
import functools
import hashlib
import json
import os
from dataclasses import dataclass

import torch
from tqdm import tqdm

from dataset import DATASETS, eval_loader, get_dataset, get_info
from dataset.device_loader import gpu_loader_works
from helper.core.checkpoint import file_sha1, save_atomic
from helper.core.errors import UserError, warn
from helper.core.speed import autocast, compiled


@contextlib.contextmanager
def model_mode(model, training=False):
    """Put `model` in train/eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def model_features(model, images, layer=-1):
    """Features of one batch, (B, 3, H, W) -> (B, D) float32, on the images' device.

    `layer=-1` is the pooled penultimate vector (B, feat_dim); any other index picks
    that stage feature of `model(images, is_feat=True)`, flattened to (B, -1).
    """
    if layer == -1:
        return model.penultimate(images).float()
    stage_features, _ = model(images, is_feat=True)
    if not -len(stage_features) <= layer < len(stage_features):
        raise UserError(
            f"Feature layer {layer} does not exist: this model returns {len(stage_features)} "
            f"stage features, so the layer index must lie in [{-len(stage_features)}, "
            f"{len(stage_features) - 1}] (-1 is the pooled penultimate feature)."
        )
    return stage_features[layer].flatten(1).float()


def features_fn(compile=False):
    """`model_features`, or its torch.compile'd twin (one per process, shared by every checkpoint)."""
    return compiled(model_features) if compile else model_features


def iter_batch_features(model, loader, device, layer=-1, amp=False, progress=False, desc="features", compile=False):
    """Yield `(features (B, D) float32, labels (B,) int64)` per batch, both on `device`.

    The caller chooses the model mode and the grad mode; loader items are tuples whose
    first two entries are images and labels (extra entries are ignored).
    """
    featurize = features_fn(compile)
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images = batch[0].to(device, non_blocking=True)
        labels = torch.as_tensor(batch[1]).to(device, dtype=torch.long, non_blocking=True)
        with autocast(device, amp):
            features = featurize(model, images, layer)
        yield features.float(), labels


def extract_features(model, loader, device, layer=-1, amp=False, progress=False, compile=False):
    """Features of a whole loader in eval mode: `(features (N, D) float32, labels (N,) int64)` on CPU.

    The model's previous train/eval mode is restored afterwards. `compile`: through
    `torch.compile` (same values within float tolerance).
    """
    feature_chunks, label_chunks = [], []
    with model_mode(model, training=False), torch.no_grad():
        for features, labels in iter_batch_features(model, loader, device, layer, amp, progress, compile=compile):
            feature_chunks.append(features.cpu())
            label_chunks.append(labels.cpu())
    if not feature_chunks:
        raise UserError("Cannot extract features: the data loader yielded no batches (is the data set empty?).")
    return torch.cat(feature_chunks), torch.cat(label_chunks)


def cache_path(cache_dir, key):
    """`<cache_dir>/<sha1 of the sorted JSON of key>.pt`."""
    try:
        text = json.dumps(key, sort_keys=True)
    except TypeError as err:
        raise UserError(f"A feature-cache key must hold plain values (str, int, float, bool, lists, dicts): {err}.") from err
    return os.path.join(cache_dir, hashlib.sha1(text.encode("utf-8")).hexdigest() + ".pt")


def cached_features(cache_dir, key, compute_fn, check=None):
    """Return the tuple of tensors stored under `key`, computing and saving it on a miss.

    `compute_fn()` returns a tuple of tensors. Saving writes a temp file in `cache_dir`
    and renames it, so an interrupted run never leaves a half-written cache entry; an entry
    damaged some other way (a copy cut short), not a list of tensors, or that `check(tensors)`
    finds wrong (it returns what is wrong, or None) is recomputed with a warning.
    """
    path = cache_path(cache_dir, key)
    if os.path.exists(path):
        try:
            tensors = torch.load(path, map_location="cpu", weights_only=True)
            problem = (None if isinstance(tensors, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in tensors)
                       else f"it holds a {type(tensors).__name__}, not a list of tensors")
            problem = problem or (check and check(tuple(tensors)))
        except Exception as err:        # truncated or damaged (a copy cut short, a full disk): recompute it
            problem = f"it is damaged ({type(err).__name__})"
        if not problem:
            return tuple(tensors)
        warn(f"the feature cache file {path} cannot be used: {problem}; recomputing it.")
    tensors = tuple(compute_fn())
    save_atomic(list(tensors), path)
    return tensors


def check_split_features(rows):
    """A `cached_features` check of (features, labels): float32 (rows, D) features, int64 (rows,) labels."""
    def check(tensors):
        shapes = ", ".join(f"{t.dtype} {tuple(t.shape)}" for t in tensors)
        if (len(tensors) != 2 or tensors[0].dtype != torch.float32 or tensors[0].dim() != 2
                or tensors[1].dtype != torch.int64 or tuple(tensors[1].shape) != (rows,)
                or tensors[0].shape[0] != rows):
            return f"it holds {shapes or 'nothing'}, not float32 ({rows}, D) features and int64 ({rows},) labels"
        return None
    return check


# ------------------------------------------------------------------ a sweep's splits and their features
@dataclass(frozen=True)
class FeatureConfig:
    """Where a sweep reads its data and how it extracts (and caches) a checkpoint's features."""
    data_folder: str = "./data"
    num_workers: int = 0
    extract_batch: int = 256
    loader: str = "auto"            # gpu, cpu or auto (gpu on CUDA for array data sets that fit), see --loader
    amp: bool = False               # bf16 autocast on CUDA (the paper's features are fp32)
    compile: bool = False           # torch.compile the feature function
    channels_last: bool = False     # the models are loaded NHWC, so the device loader yields NHWC batches
    cache_dir: str | None = None    # keep features on disk, keyed by checkpoint SHA-1, data set, split and layer
    progress: bool = True           # tqdm bars


def load_split(name, split, data_folder, augment="none", per_class=None):
    """One split of data set `name` (DataNotFoundError names the missing path); `per_class`: only the first
    images of each class (transfer.py --target_per_class)."""
    get_info(name, split)
    return get_dataset(name, split=split, augment=augment, root=data_folder,
                       download=split == DATASETS[name].train_split, per_class=per_class,
                       per_class_flag="--target_per_class")


def feature_loader(dataset, config, device):
    """Unshuffled, unaugmented batches of `dataset` for feature extraction, by `config.loader`.

    Built once per split and sweep (`_sweep_loader`), so a --loader gpu upload happens once, not
    once per checkpoint.
    """
    on_device = config.loader == "gpu" or (config.loader == "auto" and device.type == "cuda"
                                           and gpu_loader_works(dataset, device))
    return _sweep_loader(dataset, config.extract_batch, device, on_device, config.num_workers,
                         bool(config.channels_last))


_sweep_loader = functools.lru_cache(maxsize=4)(eval_loader)


def split_features(load_model, dataset, split, ckpt_path, config, device, layer=-1):
    """(features (N, D) float32, labels (N,) int64) on CPU of the checkpoint at `ckpt_path` on `dataset`
    (its split `split`), in eval mode, at `layer` (-1: the pooled penultimate feature).

    `load_model()` returns the checkpoint's model; with `config.cache_dir` it is called only on a cache
    miss, so a cached checkpoint is only read to hash it (the key holds its SHA-1, which the sweep computes
    once per file for its rows anyway).
    """
    def compute():
        return extract_features(load_model(), feature_loader(dataset, config, device), device, layer=layer,
                                amp=config.amp, progress=config.progress, compile=config.compile)

    if not config.cache_dir:
        return compute()
    key = {"checkpoint_sha1": file_sha1(ckpt_path), "dataset": dataset.info.name, "split": split,
           "root": os.path.abspath(config.data_folder), "layer": layer, "size": len(dataset), "amp": config.amp}
    return cached_features(config.cache_dir, key, compute, check_split_features(len(dataset)))
