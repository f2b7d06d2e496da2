"""Schwartz et al. (2020): leave when the calibrated max probability reaches the threshold."""

import torch

from sledge.errors import SledgeError
from sledge.nn.exit_policies.base import ExitPolicy, ExitView, unit_interval


class ConfidencePolicy(ExitPolicy):
    """
    A row leaves at the first exit whose max-softmax probability is >= `threshold`: 0 always takes
    the first exit, 1 always runs to the last.

    Parameters
    ----------
    threshold : `float`, optional (default = `1.0`)
        In [0, 1].
    calibrated : `bool`, optional (default = `True`)
        Use the calibrated distribution (logits / temperature); `False` ignores the temperatures
        (the paper's calibration ablation).
    """

    name = "confidence"

    def __init__(self, threshold: float = 1.0, calibrated: bool = True) -> None:
        self.threshold = unit_interval(threshold, "exit_policy.threshold")
        self.calibrated = bool(calibrated)

    def check(self, regression: bool, has_lte: bool) -> None:
        if regression:
            raise SledgeError(
                "exit_policy 'confidence' cannot apply to a regression model: it has no class "
                "distribution to be confident in (use 'learned' or 'patience')"
            )

    def leaves(self, view: ExitView, state: dict[str, torch.Tensor]) -> torch.Tensor:
        confidence = view.probs(self.calibrated).max(dim=-1)[0]
        threshold = self.setting_of(state)
        return (confidence >= threshold) & (torch.as_tensor(threshold) < 1.0)  # threshold 1: never

    def never_leaves_early(self, num_exits: int) -> bool:
        return self.threshold >= 1.0

    def describe(self) -> str:
        return self.name if self.calibrated else f"{self.name} (uncalibrated)"
