"""DeeBERT (Xin et al. 2020): leave when the entropy of the exit's distribution is low."""

import math

import torch

from sledge.errors import SledgeError
from sledge.nn.exit_policies.base import ExitPolicy, ExitView, unit_interval


class EntropyPolicy(ExitPolicy):
    """
    A row leaves at the first exit where the entropy of its calibrated class distribution, divided
    by log(number of classes) (so it lies in [0, 1]), is <= `threshold`: 1 always takes the first
    exit; 0 leaves early only where an exit is certain to the last bit.

    Parameters
    ----------
    threshold : `float`, optional (default = `0.0`)
        In [0, 1].
    calibrated : `bool`, optional (default = `True`)
        Use the calibrated distribution (logits / temperature).
    """

    name = "entropy"

    def __init__(self, threshold: float = 0.0, calibrated: bool = True) -> None:
        self.threshold = unit_interval(threshold, "exit_policy.threshold")
        self.calibrated = bool(calibrated)

    def check(self, regression: bool, has_lte: bool) -> None:
        if regression:
            raise SledgeError(
                "exit_policy 'entropy' cannot apply to a regression model: it has no class "
                "distribution to take the entropy of (use 'learned' or 'patience')"
            )

    def leaves(self, view: ExitView, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return normalised_entropy(view.probs(self.calibrated)) <= self.setting_of(state)

    def describe(self) -> str:
        return self.name if self.calibrated else f"{self.name} (uncalibrated)"


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """-sum p log p / log(classes), per row, in [0, 1] (0 log 0 = 0)."""
    entropy = -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(dim=-1)
    return (entropy / math.log(probs.size(-1))).clamp(0.0, 1.0)
