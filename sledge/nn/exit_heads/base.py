"""The interface of an exit head, and the scalar mix the pooled heads share."""

import torch
from torch import nn


class ScalarMix(nn.Module):
    """
    Peters et al. (2018) scalar mix: `gamma * sum_j softmax(w)_j * x_j` over a list of tensors.

    Parameters
    ----------
    num_inputs : `int`
        How many tensors are mixed (for the exit at layer k: the k + 1 layers 0..k).
    """

    def __init__(self, num_inputs: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_inputs))
        self.gamma = nn.Parameter(torch.ones(1))

    def forward(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        weights = torch.softmax(self.weights, dim=0)
        stacked = torch.stack(tensors, dim=0)  # (num_inputs, ..., hidden)
        return self.gamma * torch.einsum("n,n...->...", weights, stacked)


class ExitHead(nn.Module):
    """
    One exit on transformer layer `layer`: `features` turns what the encoder has computed so far into
    one vector per row (what the learning-to-exit module reads too), `classify` turns that vector into
    logits (one score for regression). Subclasses differ in what they read and how much they compute.
    `classifier` is the final linear layer of every head.
    """

    name = ""  # the head type's name
    reads_tokens = False  # whether `features` reads the token states (its sums then run over the length)
    layer: int
    feature_size: int
    classifier: nn.Linear

    def features(
        self, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """`pooled[j]`: the pooled vector after layer j (j = 0..at least `layer`); `hidden`: the token
        states after `layer`, (rows, length, hidden); `attention_mask`: (rows, length), 1 on tokens."""
        raise NotImplementedError

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(
        self, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        return self.classify(self.features(pooled, hidden, attention_mask))
