"""The settings of one MINE fit as mine.py runs it, per checkpoint (`helper.sweep.mi.estimate_mi` fits it)."""
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class MineConfig:
    """mine.py's estimator flags: which bound, how long and how the statistics network trains."""
    estimator: str = "mine"         # a bound of helper.sweep.mi.ESTIMATORS (paper: mine, Donsker-Varadhan)
    iters: int = 10000
    batch_size: int = 5000          # pairs per iteration
    lr: float = 1e-4                # Adam learning rate of the statistics network
    hidden_size: int = 1024
    ma_rate: float = 0.01           # weight of each batch in MINE's moving average of E[exp T]
    window: int = 500               # last iterations averaged for the reported value
    holdout: float | None = None    # fraction of rows held out to pick and score the critic
    seed: int = 0
    amp: bool = False               # bf16 autocast on CUDA (bounds reduced in fp32)
    tf32: bool = True               # TF32 matmuls on CUDA when amp is off
    compile: bool = False
    progress: bool = True

    def kwargs(self):
        """These settings as `estimate_mi`'s keyword arguments."""
        return asdict(self)
