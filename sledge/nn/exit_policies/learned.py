"""BERxiT (Xin et al. 2021): leave when the learning-to-exit module predicts enough certainty."""

import torch

from sledge.errors import SledgeError
from sledge.nn.exit_policies.base import ExitPolicy, ExitView, unit_interval


class LearnedPolicy(ExitPolicy):
    """
    A row leaves at the first exit whose certainty, as the model's learning-to-exit (LTE) module
    predicts it from the exit's mixed pooled vector, is >= `threshold`: 0 always takes the first
    exit, 1 always runs to the last. For classification and regression alike; the model must have
    been trained with `learn_to_exit`.

    Parameters
    ----------
    threshold : `float`, optional (default = `1.0`)
        In [0, 1].
    """

    name = "learned"

    def __init__(self, threshold: float = 1.0) -> None:
        self.threshold = unit_interval(threshold, "exit_policy.threshold")

    def check(self, regression: bool, has_lte: bool) -> None:
        if not has_lte:
            raise SledgeError(
                "exit_policy 'learned' cannot apply: the model was trained without the learning-to-exit "
                "module (train it with model.learn_to_exit: true)"
            )

    def leaves(self, view: ExitView, state: dict[str, torch.Tensor]) -> torch.Tensor:
        if view.certainty is None:
            raise SledgeError("exit_policy 'learned' needs the model's learning-to-exit module")
        threshold = self.setting_of(state)
        return (view.certainty >= threshold) & (torch.as_tensor(threshold) < 1.0)  # threshold 1: never

    def never_leaves_early(self, num_exits: int) -> bool:
        return self.threshold >= 1.0
