"""Tests for crd/: NCE and CRD memory, instance discrimination, ITRD, KD and feature-regression losses (CPU, float32)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from crd import (CatRegression, ContrastMemory, CRDLoss, Embed, InstanceDiscrimination, ITRDLoss,
                 itrd_correlation_loss, itrd_mutual_loss, kd_loss, nce_loss)
from helper.core.errors import UserError

DIM, N_DATA, NCE_K, BATCH = 8, 20, 5, 4


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def unit(rows, dim=DIM):
    return F.normalize(torch.randn(rows, dim), dim=1)


def test_embed_gives_unit_rows():
    out = Embed(6, 3)(torch.randn(5, 6))
    assert out.shape == (5, 3)
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-6)


def test_nce_loss_matches_hand_computation():
    x = torch.tensor([[0.5, 0.1, 0.2], [2.0, 0.3, 0.05]])
    n_data, eps = 10, 1e-7
    k_pn = 2 / n_data
    total = 0.0
    for row in x.tolist():
        total += np.log(row[0] / (row[0] + k_pn + eps))
        total += sum(np.log(k_pn / (v + k_pn + eps)) for v in row[1:])
    assert nce_loss(x, n_data).item() == pytest.approx(-total / 2, rel=1e-5)


def test_sample_indices_positive_first_and_in_range():
    memory = ContrastMemory(DIM, N_DATA, NCE_K)
    y = torch.tensor([3, 0, 19, 7])
    idx = memory.sample_indices(y)
    assert idx.shape == (4, NCE_K + 1) and idx.dtype == torch.long
    assert torch.equal(idx[:, 0], y)
    assert idx.min() >= 0 and idx.max() < N_DATA


def test_scores_shapes_values_and_z_fixed_once():
    memory = ContrastMemory(DIM, N_DATA, NCE_K, nce_t=0.5)
    v1, v2 = unit(BATCH), unit(BATCH)
    idx = memory.sample_indices(torch.arange(BATCH))
    assert memory.z_v1.item() == -1 and memory.z_v2.item() == -1
    out_v1, out_v2 = memory.scores(v1, v2, idx)
    assert out_v1.shape == out_v2.shape == (BATCH, NCE_K + 1)
    raw_v2 = torch.exp(torch.einsum("bkd,bd->bk", memory.memory_v1[idx], v2) / 0.5)
    assert memory.z_v2.item() == pytest.approx(raw_v2.mean().item() * N_DATA, rel=1e-5)
    assert torch.allclose(out_v2, raw_v2 / memory.z_v2, rtol=1e-5)
    z_before = (memory.z_v1.clone(), memory.z_v2.clone())
    memory.scores(unit(BATCH) * 0.1, unit(BATCH), idx)
    assert torch.equal(memory.z_v1, z_before[0]) and torch.equal(memory.z_v2, z_before[1])


def test_reduce_fn_hook_is_used_for_z():
    memory = ContrastMemory(DIM, N_DATA, NCE_K)
    idx = memory.sample_indices(torch.arange(BATCH))
    memory.scores(unit(BATCH), unit(BATCH), idx, reduce_fn=lambda mean: torch.tensor(2.0))
    assert memory.z_v1.item() == pytest.approx(2.0 * N_DATA)


def test_update_keeps_unit_rows_and_moves_toward_batch():
    memory = ContrastMemory(DIM, N_DATA, NCE_K, nce_m=0.5)
    y = torch.tensor([1, 4, 9])
    v1, v2 = unit(3), unit(3)
    cos_before = (memory.memory_v1[y] * v1).sum(1)
    untouched = memory.memory_v1[0].clone()
    memory.update(v1, v2, y)
    assert torch.allclose(memory.memory_v1.norm(dim=1), torch.ones(N_DATA), atol=1e-6)
    assert torch.allclose(memory.memory_v2.norm(dim=1), torch.ones(N_DATA), atol=1e-6)
    assert ((memory.memory_v1[y] * v1).sum(1) > cos_before).all()
    assert torch.equal(memory.memory_v1[0], untouched)


def test_refresh_sets_rows_exactly():
    memory = ContrastMemory(DIM, N_DATA, NCE_K)
    y = torch.tensor([2, 5])
    v1, v2 = unit(2), unit(2)
    memory.refresh(v1, v2, y)
    assert torch.allclose(memory.memory_v1[y], v1, atol=1e-6)
    assert torch.allclose(memory.memory_v2[y], v2, atol=1e-6)


def test_bad_hyperparameters_raise_user_error():
    with pytest.raises(UserError, match="nce_t"):
        ContrastMemory(DIM, N_DATA, NCE_K, nce_t=0)
    with pytest.raises(UserError, match="nce_m"):
        ContrastMemory(DIM, N_DATA, NCE_K, nce_m=1.5)


def make_crd():
    return CRDLoss(feat_dim_s=6, feat_dim_t=10, n_data=N_DATA, feat_dim=DIM, nce_k=NCE_K)


def test_crd_loss_backward_reaches_both_embeds_and_updates_memory():
    crd = make_crd()
    f_s, f_t = torch.randn(BATCH, 6, requires_grad=True), torch.randn(BATCH, 10)
    idx = torch.tensor([0, 3, 6, 9])
    bank_before = crd.memory.memory_v1.clone()
    loss = crd(f_s, f_t, idx)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    for embed in (crd.embed_s, crd.embed_t):
        assert embed.linear.weight.grad is not None and embed.linear.weight.grad.abs().sum() > 0
    changed = (crd.memory.memory_v1 != bank_before).any(dim=1)
    assert torch.equal(changed.nonzero().flatten(), idx)


def test_crd_gather_fn_feeds_the_update():
    crd = make_crd()
    seen = []
    crd(torch.randn(BATCH, 6), torch.randn(BATCH, 10), torch.arange(BATCH),
        gather_fn=lambda t: seen.append(t.shape) or t)
    assert seen == [(BATCH, DIM), (BATCH, DIM), (BATCH,)]


def test_crd_refresh_memory_writes_embeddings():
    crd = make_crd()
    f_s, f_t, idx = torch.randn(3, 6), torch.randn(3, 10), torch.tensor([7, 8, 11])
    crd.refresh_memory(f_s, f_t, idx)
    assert torch.allclose(crd.memory.memory_v1[idx], crd.embed_s(f_s).detach(), atol=1e-6)
    assert torch.allclose(crd.memory.memory_v2[idx], crd.embed_t(f_t).detach(), atol=1e-6)


def test_state_dict_round_trip_restores_banks_and_z():
    crd = make_crd()
    crd(torch.randn(BATCH, 6), torch.randn(BATCH, 10), torch.arange(BATCH))
    state = {k: v.clone() for k, v in crd.state_dict().items()}
    assert {"memory.memory_v1", "memory.memory_v2", "memory.z_v1", "memory.z_v2"} <= set(state)
    fresh = make_crd()
    assert fresh.memory.z_v1.item() == -1
    fresh.load_state_dict(state)
    for key in ("memory_v1", "memory_v2", "z_v1", "z_v2"):
        assert torch.equal(getattr(fresh.memory, key), getattr(crd.memory, key))
    crd.load_state_dict(make_crd().state_dict())            # back to "Z not fixed": the next step fixes it again
    assert crd.memory.z_v1.item() == -1
    crd(torch.randn(BATCH, 6), torch.randn(BATCH, 10), torch.arange(BATCH))
    assert crd.memory.z_v1.item() > 0 and crd.memory.z_v2.item() > 0


def test_instance_discrimination_loss_and_bank_update():
    model = InstanceDiscrimination(feat_dim=5, n_data=6, dim=3, instance_t=0.2, instance_m=0.25)
    feat, idx = torch.randn(2, 5), torch.tensor([4, 1])
    bank = model.bank.clone().numpy()
    w, b = model.projector.weight.detach().numpy(), model.projector.bias.detach().numpy()
    v = feat.numpy() @ w.T + b
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    logits = v @ bank.T / 0.2
    log_prob = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -log_prob[[0, 1], [4, 1]].mean()
    loss = model(feat, idx)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    mixed = 0.25 * bank[[4, 1]] + 0.75 * v
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    assert np.allclose(model.bank[idx].numpy(), mixed, atol=1e-6)
    assert np.array_equal(model.bank[[0, 2, 3, 5]].numpy(), bank[[0, 2, 3, 5]])
    loss.backward()
    assert model.projector.weight.grad.abs().sum() > 0


def standardise_np(x):
    return (x - x.mean(0)) / (x.std(0, ddof=1) + 1e-6)


def test_itrd_losses_match_numpy():
    z_s, f_t = torch.randn(5, 4), torch.randn(5, 4)
    zs, ft = z_s.double().numpy(), f_t.double().numpy()
    corr = (standardise_np(zs) * standardise_np(ft)).mean(0)
    expected_corr = np.log2((np.abs(corr - 1) ** (2 * 1.01)).sum())
    assert itrd_correlation_loss(z_s, f_t).item() == pytest.approx(expected_corr, rel=1e-4)
    zs /= np.linalg.norm(zs, axis=1, keepdims=True)
    ft /= np.linalg.norm(ft, axis=1, keepdims=True)
    g_s = zs @ zs.T
    g_st = g_s * (ft @ ft.T)
    g_s, g_st = g_s / np.trace(g_s), g_st / np.trace(g_st)
    assert itrd_mutual_loss(z_s, f_t).item() == pytest.approx((g_s ** 2 - g_st ** 2).sum(), rel=1e-4)


def test_correlation_loss_lowest_for_identical_features():
    f_t = torch.randn(16, 6)
    same = itrd_correlation_loss(f_t.clone(), f_t)
    assert torch.isfinite(same)
    assert same < itrd_correlation_loss(torch.randn(16, 6), f_t)
    assert same < itrd_correlation_loss(f_t + 0.5 * torch.randn(16, 6), f_t)


def test_mutual_loss_nonnegative_and_lower_for_matching_student():
    centres = torch.randn(2, 6) * 3
    f_t = centres.repeat_interleave(4, dim=0) + 0.1 * torch.randn(8, 6)  # two tight clusters
    random_student = torch.randn(8, 6)
    same, unrelated = itrd_mutual_loss(f_t.clone(), f_t), itrd_mutual_loss(random_student, f_t)
    assert same >= 0 and unrelated >= 0
    assert same < unrelated


def test_itrd_module_combines_terms_and_trains_embed():
    itrd = ITRDLoss(feat_dim_s=3, feat_dim_t=4, lambda_corr=2.0, lambda_mutual=1.0)
    f_s, f_t = torch.randn(6, 3), torch.randn(6, 4, requires_grad=True)
    loss = itrd(f_s, f_t)
    z_s = itrd.embed(f_s)
    expected = 2.0 * itrd_correlation_loss(z_s, f_t) + itrd_mutual_loss(z_s, f_t)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert itrd.embed.weight.grad.abs().sum() > 0 and f_t.grad is None
    with pytest.raises(UserError, match="batch of at least 2"):
        itrd_correlation_loss(torch.randn(1, 4), torch.randn(1, 4))


def test_itrd_mutual_term_uses_raw_student_feature_when_widths_match():
    """ITRD's code embeds the student for the mutual loss only when the widths differ."""
    itrd = ITRDLoss(feat_dim_s=4, feat_dim_t=4, lambda_corr=0.5, lambda_mutual=3.0)
    f_s, f_t = torch.randn(6, 4), torch.randn(6, 4)
    expected = 0.5 * itrd_correlation_loss(itrd.embed(f_s), f_t) + 3.0 * itrd_mutual_loss(f_s, f_t)
    assert itrd(f_s, f_t).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kd_loss_zero_for_identical_logits_only():
    logits = torch.randn(4, 10)
    assert kd_loss(logits, logits.clone()).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(4, 10)
    p_t = F.softmax(other / 4, dim=1)
    expected = (p_t * (p_t.log() - F.log_softmax(logits / 4, dim=1))).sum(1).mean() * 16
    assert kd_loss(logits, other).item() == pytest.approx(expected.item(), rel=1e-5)
    assert kd_loss(logits, other) > 0


def test_cat_regression_is_the_mean_squared_error_of_the_mapped_student_features():
    regression = CatRegression(3, 5)
    student, teachers = torch.randn(4, 3), torch.randn(4, 5)
    mapped = student @ regression.regressor.weight.T + regression.regressor.bias
    assert regression(student, teachers).item() == pytest.approx(((mapped - teachers) ** 2).mean().item(), rel=1e-5)
    assert regression(student, mapped.detach()).item() == pytest.approx(0.0, abs=1e-10)
    regression(student, teachers).backward()
    assert regression.regressor.weight.grad.abs().sum() > 0
