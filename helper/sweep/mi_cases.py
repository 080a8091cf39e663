"""Synthetic pairs with known mutual information at the paper's widths, for checking MINE's precision.

The paper's critics read X = a flattened 3x32x32 image (3,072 values) against T = a 512-d feature
for I(X;T), and T against a one-hot label over 100 classes for I(T;Y). These two cases have the
same shapes and an exact answer:

- `latent_gaussian`: latent Gaussian pairs (z, w), corr(z_i, w_i) = rho, mapped into 3,072 and
  512 dimensions by fixed random full-rank linear maps. An injective map does not change mutual
  information, so I(X;T) = I(z;w) = -k/2 log(1 - rho^2) for k latent dimensions.
- `gaussian_classes`: Y uniform over K classes, T = mu_Y + N(0, I). The posterior p(y|t) is a
  softmax, so I(T;Y) = log K - E_t[H(p(.|t))] by Monte Carlo over fresh samples.
"""
import math

import torch


def latent_gaussian(rows, latent_dim=16, rho=0.5, dim_x=3072, dim_t=512, seed=0):
    """(X (rows, dim_x), T (rows, dim_t), true I(X;T) in nats); X and T are linear images of
    k = latent_dim correlated standard Gaussian pairs, scaled to unit variance per coordinate."""
    if not latent_dim <= min(dim_x, dim_t):
        raise ValueError(f"latent_dim {latent_dim} must not exceed dim_x {dim_x} and dim_t {dim_t} (injective maps)")
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, latent_dim, generator=gen)
    w = rho * z + math.sqrt(1 - rho ** 2) * torch.randn(rows, latent_dim, generator=gen)
    to_x = torch.randn(latent_dim, dim_x, generator=gen) / math.sqrt(latent_dim)   # rank latent_dim a.s.
    to_t = torch.randn(latent_dim, dim_t, generator=gen) / math.sqrt(latent_dim)
    return z @ to_x, w @ to_t, -latent_dim / 2 * math.log(1 - rho ** 2)


def class_means(num_classes, dim, separation, gen):
    """(K, dim) means with E||mu_j - mu_k||^2 = 2 separation^2."""
    return torch.randn(num_classes, dim, generator=gen, dtype=torch.float64) * separation / math.sqrt(dim)


def posterior_entropy(t, means):
    """Mean entropy (nats) of p(y | t) for T = mu_y + N(0, I) with a uniform prior; t (M, dim) float64."""
    logits = t @ means.T - 0.5 * (means * means).sum(1)               # (M, K)
    log_post = logits.log_softmax(1)
    return float(-(log_post.exp() * log_post).sum(1).mean())


def gaussian_classes(rows, num_classes=100, dim=512, separation=3.0, seed=0, mc_rows=200_000):
    """(T (rows, dim) float32, labels (rows,) long, true I(T;Y) in nats by Monte Carlo over mc_rows)."""
    gen = torch.Generator().manual_seed(seed)
    means = class_means(num_classes, dim, separation, gen)

    def draw(n):
        labels = torch.randint(num_classes, (n,), generator=gen)
        return means[labels] + torch.randn(n, dim, generator=gen, dtype=torch.float64), labels

    t, labels = draw(rows)
    entropy = sum(posterior_entropy(draw(chunk)[0], means) * chunk
                  for chunk in _chunks(mc_rows, 20_000)) / mc_rows
    return t.float(), labels, math.log(num_classes) - entropy


def _chunks(total, size):
    """Sizes of consecutive chunks of at most `size` that add up to `total`."""
    return [min(size, total - start) for start in range(0, total, size)]
