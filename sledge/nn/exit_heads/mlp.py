"""An exit with one hidden layer: the scalar mix of the pooled vectors, then a small MLP."""

import torch
from torch import nn

from sledge.nn.exit_heads.base import ExitHead, ScalarMix


class MlpExitHead(ExitHead):
    """
    The linear head's mixed pooled vector, then dropout, a dense layer of `inner` units with GELU,
    dropout, and the linear layer: a non-linear probe, for little more time than the linear head.

    Parameters
    ----------
    layer, hidden_size, num_labels, dropout
        As the linear head's.
    inner : `int`, optional (default = `hidden_size`)
        Width of the hidden layer.
    """

    name = "mlp"

    def __init__(
        self, layer: int, hidden_size: int, num_labels: int, dropout: float, inner: int | None = None
    ) -> None:
        super().__init__()
        self.layer = layer
        self.feature_size = hidden_size
        self.mix = ScalarMix(layer + 1)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, inner or hidden_size)
        self.classifier = nn.Linear(inner or hidden_size, num_labels)

    def features(
        self, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.dropout(self.mix(pooled[: self.layer + 1]))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(nn.functional.gelu(self.dense(features))))
