"""Summary statistics over seeds and folds, with Student-t intervals.

    mean, std = mean_std([81.0, 84.5, 83.0])          # sample std (n - 1)
    mean, low, high = t_interval(drops)              # 95 % interval of the mean
    diff, low, high = welch_interval(vanilla, ctc)   # 95 % interval of mean(ctc) - mean(vanilla)
    rho = spearman(transfer, nc1)                    # rank correlation of two paired sequences

With one value there is no spread to learn from: the std is 0 and every interval is (nan, nan).
"""
import math


def mean_std(values):
    """(mean, sample standard deviation with n - 1 in the denominator; 0 for one value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_std needs at least one value")
    mean = sum(values) / n
    return mean, (math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0)


def _t_quantile(level, df):
    from scipy.stats import t
    return float(t.ppf(0.5 + level / 2, df))


def t_interval(values, level=0.95):
    """(mean, low, high): the Student-t `level` interval of the mean of `values` (nan bounds for n = 1)."""
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return mean, math.nan, math.nan
    half = _t_quantile(level, n - 1) * std / math.sqrt(n)
    return mean, mean - half, mean + half


def welch_interval(first, second, level=0.95):
    """(mean(second) - mean(first), low, high): Welch's `level` interval for two independent samples,
    unequal variances, Welch-Satterthwaite degrees of freedom (nan bounds when either has one value)."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(first), mean_std(second)
    diff = mean_b - mean_a
    n_a, n_b = len(first), len(second)
    if n_a < 2 or n_b < 2:
        return diff, math.nan, math.nan
    var_a, var_b = std_a ** 2 / n_a, std_b ** 2 / n_b
    se = math.sqrt(var_a + var_b)
    if se == 0:
        return diff, diff, diff
    df = (var_a + var_b) ** 2 / (var_a ** 2 / (n_a - 1) + var_b ** 2 / (n_b - 1))
    half = _t_quantile(level, df) * se
    return diff, diff - half, diff + half


def spearman(first, second):
    """Spearman's rank correlation of two paired sequences (ties get their mean rank); nan with fewer than
    3 pairs or when either sequence is constant (no ranking to correlate)."""
    if len(first) != len(second):
        raise ValueError(f"spearman needs paired sequences, got {len(first)} and {len(second)} values")
    if len(first) < 3 or len(set(first)) < 2 or len(set(second)) < 2:
        return math.nan
    from scipy.stats import spearmanr
    return float(spearmanr(first, second).statistic)
