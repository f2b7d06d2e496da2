"""What the early-exit runners return."""

from dataclasses import dataclass

import torch


@dataclass
class EarlyExitOutput:
    """Per instance: the exit taken and its outputs."""

    logits: torch.Tensor  # (batch, num_labels) uncalibrated logits of the exit taken; regression (batch, 1)
    probs: torch.Tensor | None  # (batch, num_labels) calibrated (logits / temperature); None for regression
    exit_index: torch.Tensor  # (batch,), position of the exit taken among the model's exits
    certainty: torch.Tensor | None = None  # (batch,) the LTE module's certainty at the exit taken
