"""The paper's exit: a scalar mix of the pooled vectors of layers 0..k, dropout, one linear layer."""

import torch
from torch import nn

from sledge.nn.exit_heads.base import ExitHead, ScalarMix


class LinearExitHead(ExitHead):
    """
    Schwartz et al. (2020): a learned softmax-weighted mix of the pooled vectors ([CLS], or the token
    mean) of layers 0..k, dropout, and a linear layer. Costs almost nothing.

    Parameters
    ----------
    layer : `int`
        The 0-based transformer layer the exit sits on.
    hidden_size : `int`
        Width of the encoder's hidden states.
    num_labels : `int`
        Number of classes (1: a regression score).
    dropout : `float`
        Dropout before the linear layer.
    """

    name = "linear"

    def __init__(self, layer: int, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.layer = layer
        self.feature_size = hidden_size
        self.mix = ScalarMix(layer + 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def features(
        self, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.dropout(self.mix(pooled[: self.layer + 1]))
