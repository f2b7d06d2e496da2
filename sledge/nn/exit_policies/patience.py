"""PABEE (Zhou et al. 2020): leave once consecutive exits keep agreeing."""

import torch

from sledge.errors import SledgeError
from sledge.nn.exit_policies.base import ExitPolicy, ExitView


class PatiencePolicy(ExitPolicy):
    """
    A row leaves at the first exit where the last `patience` + 1 exits agree: predict the same class
    (argmax), or for regression predict scores each within `tolerance` of the one before. A count of
    agreements in a row is kept per row (it drops to 0 when an exit disagrees with the one before),
    and the row leaves when it reaches `patience`. 0 always takes the first exit; with E exits,
    E - 1 or more never leaves early.

    Parameters
    ----------
    patience : `int`, optional (default = `1`)
        How many consecutive agreements make a row leave, >= 0.
    tolerance : `float`, optional (default = `0.1`)
        For regression: how far apart two consecutive scores may be and still agree, >= 0.
    """

    name = "patience"
    setting = "patience"

    def __init__(self, patience: int = 1, tolerance: float = 0.1) -> None:
        if isinstance(patience, bool) or not float(patience).is_integer() or patience < 0:
            raise SledgeError(f"exit_policy.patience must be an integer >= 0, got {patience!r}")
        if not tolerance >= 0:
            raise SledgeError(f"exit_policy.tolerance must be >= 0, got {tolerance!r}")
        self.patience = int(patience)
        self.tolerance = float(tolerance)

    def start(self, rows: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {"count": torch.zeros(rows, dtype=torch.long, device=device)}

    def leaves(self, view: ExitView, state: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = view.logits
        prediction = logits[:, 0] if view.regression else logits.argmax(dim=-1).to(logits.dtype)
        if "previous" in state:
            if view.regression:
                agree = (prediction - state["previous"]).abs() <= self.tolerance
            else:
                agree = prediction == state["previous"]
            state["count"] = torch.where(agree, state["count"] + 1, torch.zeros_like(state["count"]))
        state["previous"] = prediction
        return state["count"] >= self.setting_of(state)

    def never_leaves_early(self, num_exits: int) -> bool:
        return self.patience >= num_exits - 1

    def describe(self) -> str:
        # a tolerance other than the default names its own curve (regression sweeps compare several)
        return self.name if self.tolerance == 0.1 else f"{self.name} (tolerance {self.tolerance:g})"
