"""CRD's two momentum memory banks and the NCE scores read from them."""
import torch
import torch.nn as nn

from crd.embed import check_momentum, check_positive, l2_normalize


def random_unit_rows(n_rows, dim):
    """(n_rows, dim) tensor of random unit vectors: the initial content of a bank."""
    return l2_normalize(torch.randn(n_rows, dim))


def momentum_write(bank, rows, values, momentum):
    """bank[rows] <- normalise(momentum * bank[rows] + (1 - momentum) * values), in place.

    bank: (N, D) buffer; rows: (B,) long; values: (B, D). With repeated indices in
    `rows` only one of the writes survives (the last one on CPU; an unspecified
    one on CUDA), which is harmless because they all pull the same row.
    """
    with torch.no_grad():
        mixed = bank.index_select(0, rows) * momentum + values.detach().to(bank.dtype) * (1.0 - momentum)
        bank.index_copy_(0, rows, l2_normalize(mixed))


class ContrastMemory(nn.Module):
    """Two banks of n_data x dim unit vectors: memory_v1 (student view), memory_v2 (teacher view).

    All state is in buffers (banks and the normalisation constants z_v1, z_v2;
    -1 means "not fixed yet"), so `state_dict()` and `.to(device)` cover it.
    """

    def __init__(self, dim, n_data, nce_k, nce_t=0.07, nce_m=0.5):
        super().__init__()
        check_positive(dim=dim, n_data=n_data, nce_k=nce_k, nce_t=nce_t)
        check_momentum("nce_m", nce_m)
        self.n_data, self.nce_k, self.nce_t, self.nce_m = n_data, nce_k, nce_t, nce_m
        self.register_buffer("memory_v1", random_unit_rows(n_data, dim))
        self.register_buffer("memory_v2", random_unit_rows(n_data, dim))
        self.register_buffer("z_v1", torch.tensor(-1.0))
        self.register_buffer("z_v2", torch.tensor(-1.0))
        self._z_checked = False   # both Z known fixed: no host sync per step after that

    def sample_indices(self, y):
        """y: (B,) positive indices -> (B, K+1) long; column 0 is y, the rest uniform in [0, n_data)."""
        device = self.memory_v1.device
        idx = torch.randint(0, self.n_data, (y.shape[0], self.nce_k + 1), device=device)
        idx[:, 0] = y.to(device)
        return idx

    def _fix_z(self, out_v1, out_v2, reduce_fn):
        """Fix each Z still unset (-1) as reduce_fn(mean(out)) * n_data. out_*: (B, K+1).

        The buffers are read on the host once (after construction or a state load), not every step.
        """
        if self._z_checked:
            return
        for z_buffer, out in ((self.z_v1, out_v1), (self.z_v2, out_v2)):
            if z_buffer.item() < 0:
                z_buffer.fill_(float(reduce_fn(out.detach().mean())) * self.n_data)
        self._z_checked = True

    def _load_from_state_dict(self, *args, **kwargs):
        self._z_checked = False   # the loaded Z may be fixed or not: look again at the next step
        super()._load_from_state_dict(*args, **kwargs)

    def scores(self, v1, v2, contrast_idx, reduce_fn=None):
        """Unnormalised-softmax scores of each embedding against the *other* view's bank.

        v1: (B, dim) student embedding, v2: (B, dim) teacher embedding,
        contrast_idx: (B, K+1) long, column 0 the positive.
        Returns (out_v1, out_v2), each (B, K+1):
        out_v1 = exp(<memory_v2[idx], v1> / T) / Z_v1, out_v2 = exp(<memory_v1[idx], v2> / T) / Z_v2.
        `reduce_fn` (default identity) maps the batch mean to a global mean when
        Z is fixed, e.g. an all-reduce average across processes.
        """
        reduce_fn = reduce_fn or (lambda mean: mean)
        out_v1 = torch.exp(self._dots(v1, self.memory_v2, contrast_idx) / self.nce_t)
        out_v2 = torch.exp(self._dots(v2, self.memory_v1, contrast_idx) / self.nce_t)
        self._fix_z(out_v1, out_v2, reduce_fn)
        return out_v1 / self.z_v1, out_v2 / self.z_v2

    @staticmethod
    def _dots(v, bank, contrast_idx):
        """<bank[idx], v> as (B, K+1): one (B, n_data) matmul, then a gather of the needed columns.

        Gathering the rows first would copy a (B, K+1, dim) block per step (537 MB at batch 64,
        K 16384); the matmul reads the (n_data, dim) bank once. The bank is snapshotted because
        autograd keeps it for the backward pass while `update` rewrites rows in place.
        """
        return torch.gather(v @ bank.detach().clone().t(), 1, contrast_idx)

    def update(self, v1, v2, y):
        """Momentum update of rows y: v1, v2 (B, dim), y (B,) long; may be the all-gathered global batch."""
        momentum_write(self.memory_v1, y, v1, self.nce_m)
        momentum_write(self.memory_v2, y, v2, self.nce_m)

    def refresh(self, v1, v2, y):
        """Overwrite rows y with (normalised) v1, v2: the momentum-0 fill at the start of CTC stage 2."""
        momentum_write(self.memory_v1, y, v1, 0.0)
        momentum_write(self.memory_v2, y, v2, 0.0)
