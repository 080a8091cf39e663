"""Several processes on CPU (gloo): train_vanilla.py under torchrun, one DDP step against one single-process
step on the same global batch (vanilla and CTC, memory banks included), a NaN on one rank stopping all,
and a sweep shard taken from torchrun's RANK / WORLD_SIZE."""
import json
import os
import shutil
import socket
import subprocess
import sys
import types

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import train_ctc
import train_vanilla
import transfer
from dataset import get_loader
from helper.core.checkpoint import load_checkpoint, model_state
from models import load_model
from helper.cli.train import ctc_config, sgd_config
from helper.train.ctc import CTCObjective
from helper.core.device import get_device
from helper.core.distributed import (all_gather_cat, all_reduce_mean, cleanup, init_distributed, is_distributed,
                                shard_sampler, wrap_model)
from helper.core.errors import UserError
from helper.train.loops import NonFiniteLossError, train_one_epoch
from models import create_model
from tests.conftest import REPO_ROOT
from tests.helpers import cli, read_rows

WORLD = 2
CPU = torch.device("cpu")
N_DATA = 15  # odd: the memory fill's DistributedSampler pads one index
GLOBAL_BATCH = 8


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ one step, N ranks vs one process
def toy_data():
    """Images, labels, the global batch's indices and its CRD contrast indices (column 0 the positive)."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(N_DATA, 3, 32, 32, generator=g)
    targets = torch.randint(0, 5, (N_DATA,), generator=g)
    idx = torch.randperm(N_DATA, generator=g)[:GLOBAL_BATCH]
    contrast = torch.randint(0, N_DATA, (GLOBAL_BATCH, 5), generator=g)
    contrast[:, 0] = idx
    return images, targets, idx, contrast


def local_part(tensor, rank, world):
    """This rank's rows of the global batch: rank 0 the first half, rank 1 the second (gather order)."""
    return tensor.chunk(world)[rank]


def vanilla_step(rank, world):
    """One SGD step of resnet8. BatchNorm stays: the single process runs one forward per half of the
    global batch, so each half is normalised over the same samples as on its rank."""
    torch.manual_seed(0)
    model = wrap_model(create_model("resnet8", 5), CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    images, targets, idx, _ = toy_data()
    batch = (local_part(images[idx], rank, world), local_part(targets[idx], rank, world))

    def compute_loss(batch):
        logits = torch.cat([model(half) for half in batch[0].chunk(WORLD // world)])
        return F.cross_entropy(logits, batch[1]), logits, batch[1], {}
    metrics = train_one_epoch(model, [batch], optimizer, compute_loss, CPU, epoch=1, progress=False)
    return {"model": model_state(model), "metrics": metrics}


def without_batchnorm(net):
    """`net` with every BatchNorm replaced by identity: its output on a batch is then the concatenation
    of its outputs on the batch's parts, so one process on the global batch is the exact reference."""
    for name, child in net.named_children():
        if isinstance(child, torch.nn.BatchNorm2d):
            setattr(net, name, torch.nn.Identity())
        else:
            without_batchnorm(child)
    return net


def ctc_steps(rank, world):
    """A stage-1 step (instance bank), the switch (memory fill, sharded) and a stage-2 CRD step."""
    args = train_ctc.get_args_parser().parse_args(
        ["--stage_two_epoch", "1", "--epochs", "2", "--update_memory_bank", "--train_projector", "-a", "0.5",
         "--instance_m", "0.9", "--nce_m", "0.9", "--nce_k", "4", "--learning_rate", "0.1"])
    torch.manual_seed(0)
    model = wrap_model(without_batchnorm(create_model("resnet8", 5)), CPU)
    ctc = CTCObjective(ctc_config(args), sgd_config(args), model, N_DATA, CPU)
    optimizer = ctc.build_optimizer()
    images, targets, idx, contrast = toy_data()
    part = [local_part(t, rank, world) for t in (images[idx], targets[idx], idx, contrast)]
    everything = TensorDataset(images, targets, torch.arange(N_DATA))
    fill = types.SimpleNamespace(fill_loader=lambda: get_loader(
        everything, 3, train=False, num_workers=0, sampler=shard_sampler(everything, shuffle=False)))
    metrics = []
    for epoch, batch in [(1, part[:3]), (2, part)]:
        ctc.before_epoch(epoch, optimizer, fill)
        metrics.append(train_one_epoch(model, [batch], optimizer, ctc.compute_loss, CPU, epoch, progress=False))
    return {"model": model_state(model), "criterion": ctc.criterion.state_dict(),
            "instance": ctc.instance.state_dict(), "metrics": metrics}


def nan_on_rank_1():
    """A NaN loss on rank 1 only, at step 2 of 3: every rank must stop, naming step 2."""
    model = wrap_model(torch.nn.Linear(4, 3), CPU)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = iter(range(1, 4))

    def compute_loss(batch):
        logits = model(batch[0])
        loss = F.cross_entropy(logits, batch[1])
        bad = next(steps) == 2 and torch.distributed.get_rank() == 1
        return loss * float("nan") if bad else loss, logits, batch[1], {}
    try:
        train_one_epoch(model, [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))] * 3, optimizer,
                        compute_loss, CPU, epoch=1, progress=False)
    except NonFiniteLossError as err:
        return err.step
    return None


def worker(rank, port, out_dir):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    env = init_distributed("cpu")
    try:
        result = {"env": tuple(env), "vanilla": vanilla_step(rank, WORLD), "ctc": ctc_steps(rank, WORLD),
                  "nan_step": nan_on_rank_1(), "gathered": all_gather_cat(torch.tensor([rank, 10 + rank])),
                  "mean": all_reduce_mean(torch.tensor(float(rank)))}
        try:
            wrap_model(torch.nn.BatchNorm1d(3), CPU, sync_bn=True)
        except UserError as err:
            result["sync_bn_error"] = str(err)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        cleanup()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each of 2 gloo processes computed, and the single-process reference on the global batch."""
    out = str(tmp_path_factory.mktemp("ranks"))
    mp.spawn(worker, args=(free_port(), out), nprocs=WORLD)
    results = [torch.load(os.path.join(out, f"rank{r}.pt"), weights_only=False) for r in range(WORLD)]
    assert not is_distributed()
    return results, {"vanilla": vanilla_step(0, 1), "ctc": ctc_steps(0, 1)}


def assert_close_states(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), atol=atol, rtol=1e-5), key


def test_collectives_and_process_group_set_up(ranks):
    results, _ = ranks
    for rank, result in enumerate(results):
        assert result["env"] == (CPU, rank, WORLD, rank)
        assert result["gathered"].tolist() == [0, 10, 1, 11]
        assert result["mean"].item() == 0.5
        assert "--sync_bn needs CUDA" in result["sync_bn_error"]
    # without torchrun's variables: no process group, collectives are the identity
    assert init_distributed("cpu") == (CPU, 0, 1, 0) and not is_distributed()
    t = torch.arange(3)
    assert all_gather_cat(t) is t


def test_one_ddp_step_equals_one_step_on_the_global_batch(ranks):
    results, reference = ranks
    a, b = (r["vanilla"]["model"] for r in results)
    params = set(dict(create_model("resnet8", 5).named_parameters()))
    for key in params:  # DDP keeps the parameters identical on every rank ...
        assert torch.equal(a[key], b[key]), key
    # ... and equal to one process' step (BatchNorm statistics per half, as on each rank)
    assert_close_states({k: a[k] for k in params}, {k: reference["vanilla"]["model"][k] for k in params})
    init = create_model("resnet8", 5)
    assert not torch.equal(init.state_dict()["conv1.weight"], a["conv1.weight"])
    for result in results:  # epoch metrics are the global batch's, on every rank
        assert result["vanilla"]["metrics"] == pytest.approx(reference["vanilla"]["metrics"], rel=1e-5)


def test_ctc_memory_banks_match_across_ranks_and_the_single_process(ranks):
    results, reference = ranks
    ref = reference["ctc"]
    for part in ("criterion", "instance"):
        a, b = (r["ctc"][part] for r in results)
        for key in a:  # identical on every rank: each update writes the gathered global batch
            assert torch.equal(a[key], b[key]), (part, key)
        assert_close_states(a, ref[part])
    assert ref["criterion"]["memory.z_v1"] > 0  # Z was fixed (from the global batch) in the stage-2 step
    assert_close_states(results[0]["ctc"]["model"], ref["model"])
    for result in results:
        for got, want in zip(result["ctc"]["metrics"], ref["metrics"]):
            assert got == pytest.approx(want, rel=1e-5)
    assert "crd" in ref["metrics"][1] and "instance" in ref["metrics"][0]


def test_nan_on_one_rank_stops_every_rank_at_the_same_step(ranks):
    results, _ = ranks
    assert [r["nan_step"] for r in results] == [2, 2]


# ------------------------------------------------------------------ torchrun end to end
def torchrun(cwd, script, *argv):
    """Run `script` under torchrun with 2 CPU processes in `cwd`; returns its output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", f"--nproc_per_node={WORLD}",
           "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{free_port()}", os.path.join(REPO_ROOT, script),
           *argv]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO_ROOT)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def torchrun_run(tmp_path_factory):
    """train_vanilla.py, 2 processes, 1 epoch; returns (run folder, output)."""
    cwd = tmp_path_factory.mktemp("torchrun")
    output = torchrun(cwd, "train_vanilla.py", "--dataset", "digits_a", "--model", "resnet8", "--epochs", "1",
                      "--save_freq", "1", "--batch_size", "32", "--num_workers", "0", "--no_progress",
                      "--step_decay_epochs", "5", "--note", "ddp")
    return str(cwd / "save" / "model" / "resnet8_digits_a_lr_0.05_trial_0_ddp"), output


def test_torchrun_training_writes_one_set_of_checkpoints(torchrun_run):
    run_dir, output = torchrun_run
    assert "global batch 64 = 2 x --batch_size 32" in output
    assert sorted(os.listdir(run_dir)) == sorted(["ckpt_epoch_0.pth", "ckpt_epoch_1.pth", "resnet8_best.pth",
                                                  "resnet8_last.pth", "resume.pth", "args.json", "log.txt"])
    log = [json.loads(line) for line in open(os.path.join(run_dir, "log.txt"))]
    assert [r["epoch"] for r in log] == [1]  # written by rank 0 alone
    events = os.listdir(os.path.join(os.path.dirname(os.path.dirname(run_dir)), "tensorboard",
                                     os.path.basename(run_dir)))
    assert len([e for e in events if e.startswith("events.out.tfevents")]) == 1
    model, ckpt = load_model(os.path.join(run_dir, "ckpt_epoch_1.pth"))  # no `module.` prefix
    assert ckpt["epoch"] == 1 and ckpt["accuracy"] == pytest.approx(log[0]["val_acc1"])
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert len(load_checkpoint(os.path.join(run_dir, "resume.pth"))["rng_ranks"]) == WORLD


def test_a_torchrun_run_resumes_in_a_single_process(torchrun_run, tmp_path, monkeypatch):
    run_dir = shutil.copytree(torchrun_run[0], tmp_path / "save" / "model" / os.path.basename(torchrun_run[0]))
    monkeypatch.chdir(tmp_path)
    argv = ["--dataset", "digits_a", "--model", "resnet8", "--epochs", "2", "--save_freq", "1", "--batch_size", "32",
            "--num_workers", "0", "--no_progress", "--step_decay_epochs", "5", "--note", "ddp", "--resume"]
    with pytest.raises(UserError, match="processes was 2, now 1"):   # the global batch would halve
        train_vanilla.main(train_vanilla.get_args_parser().parse_args(argv))
    run = train_vanilla.main(train_vanilla.get_args_parser().parse_args(argv + ["--allow_arg_changes"]))
    assert os.path.samefile(run.run_dir, run_dir)
    log = [json.loads(line) for line in open(os.path.join(run_dir, "log.txt"))]
    assert [r["epoch"] for r in log if "epoch" in r] == [1, 2]
    assert [r["changed_args"] for r in log if "changed_args" in r] == [{"processes": [2, 1]}]
    assert load_checkpoint(os.path.join(run_dir, "resnet8_last.pth"))["epoch"] == 2


def test_sweep_shard_comes_from_torchrun_variables(torchrun_run, tmp_path, monkeypatch, capsys):
    """What each rank of `torchrun --nproc_per_node=2 transfer.py ...` does: rank 1 takes every 2nd checkpoint."""
    run_dir = str(shutil.copytree(torchrun_run[0], tmp_path / "run"))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    code, _, _ = cli(transfer.main, transfer.get_args_parser(),
                     ["--ckpt_path", run_dir, "--cache_dir", str(tmp_path / "features"), "--source_dataset",
                      "digits_a", "--target_dataset", "digits_b", "--model", "resnet8", "--start_epoch", "0",
                      "--skip", "1", "--epoch", "2", "--num_workers", "0", "--no_progress"], capsys)
    assert code == 0
    assert [r["epoch"] for r in read_rows(os.path.join(run_dir, "transfer_digits_b_linear.shard1of2.csv"))] == ["1"]
    assert not os.path.exists(os.path.join(run_dir, "transfer_digits_b_linear.csv"))


def test_each_torchrun_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert get_device() == torch.device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert get_device() == torch.device("cuda", 1) == get_device("cuda")
    assert get_device("cpu") == CPU and get_device("cuda:0") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")  # more processes than GPUs (a sweep): they share round-robin
    assert get_device() == torch.device("cuda", 1)


def test_asking_for_a_gpu_that_is_not_there_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == CPU
    for name in ("cuda", "cuda:0"):
        with pytest.raises(UserError, match="no CUDA device"):
            get_device(name)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="1 CUDA device"):
        get_device("cuda:1")
    with pytest.raises(UserError, match="not a device"):
        get_device("gpu0")


def test_rng_state_of_more_gpus_than_visible_restores_the_ones_present(monkeypatch):
    """A resume.pth written under torchrun on 4 GPUs resumes in one process on one GPU."""
    from helper.core.seed import rng_state, set_rng_state
    state = rng_state()
    state["cuda"] = [torch.full((4,), i, dtype=torch.uint8) for i in range(4)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda gpu_state, index: restored.append((index, gpu_state)))
    set_rng_state(state)
    assert [(i, t[0].item()) for i, t in restored] == [(0, 0)]


def test_a_fixed_gpu_index_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="--device cuda:1 under torchrun"):
        init_distributed("cuda:1")


def test_ctc_under_torchrun_resumes_to_the_straight_run(tmp_path):
    """Across the stage switch: 2 epochs then --resume to 3 equals 3 straight epochs, bitwise (each rank's
    RNG state is in resume.pth; the shard order follows from --seed and the epoch)."""
    argv = ["--dataset", "digits_a", "--model", "resnet8", "--batch_size", "32", "--num_workers", "0",
            "--no_progress", "--nce_k", "64", "--save_freq", "1", "--update_memory_bank", "-a", "0.5",
            "--stage_two_epoch", "1", "--lr_decay_epochs", "9"]  # a step schedule: lr does not depend on --epochs
    torchrun(tmp_path, "train_ctc.py", *argv, "--epochs", "3", "--model_path", "straight")
    torchrun(tmp_path, "train_ctc.py", *argv, "--epochs", "2", "--model_path", "resumed")
    assert "resuming" in torchrun(tmp_path, "train_ctc.py", *argv, "--epochs", "3", "--model_path", "resumed",
                                  "--resume")
    name = "resnet8_digits_a_a0.5_b1.0"
    a, b = (load_checkpoint(str(tmp_path / root / name / "resume.pth")) for root in ("straight", "resumed"))
    assert a["epoch"] == b["epoch"] == 3
    for part, state in [("model", a["model"]), *[(key, a["state"][key]) for key in ("frozen", "criterion")]]:
        other = b["model"] if part == "model" else b["state"][part]
        for key in state:
            assert torch.equal(state[key], other[key]), (part, key)
    assert a["state"]["criterion"]["memory.z_v1"] > 0
