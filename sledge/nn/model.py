"""The multi-exit classifier: a layer-by-layer encoder with exits on chosen layers (Schwartz et al. 2020)."""

import torch
import torch.nn.functional as F
from torch import nn

from sledge.nn.encoder import LayerwiseEncoder


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
    One exit: a scalar mix of the pooled vectors ([CLS], or the token mean) of layers 0..k, dropout,
    and a linear classifier.

    Parameters
    ----------
    layer : `int`
        The 0-based transformer layer the exit sits on.
    hidden_size : `int`
        Width of the encoder's hidden states.
    num_labels : `int`
        Number of classes.
    dropout : `float`
        Dropout before the linear layer.
    """

    def __init__(self, layer: int, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.layer = layer
        self.mix = ScalarMix(layer + 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, pooled: list[torch.Tensor]) -> torch.Tensor:
        """`pooled[j]` is the pooled vector after layer j, for j = 0..(at least) `self.layer`."""
        return self.classifier(self.dropout(self.mix(pooled[: self.layer + 1])))


class MultiExitClassifier(nn.Module):
    """
    A transformer classifier with exits on several layers, trained with the sum of the exits' losses.

    A model whose last exit is on layer k never runs the layers after k. `temperatures` holds one
    calibration temperature per exit (1 until calibrated); they scale confidences, never argmaxes.

    Parameters
    ----------
    encoder : `LayerwiseEncoder`
        The backbone, run layer by layer.
    layer_indices : `list[int]`
        0-based transformer layers carrying an exit, strictly increasing.
    num_labels : `int`
        Number of classes.
    dropout : `float`, optional (default = `0.1`)
        Dropout in each exit head.
    pooling : `str`, optional (default = `"cls"`)
        What an exit reads of each layer: `"cls"`, the [CLS] vector (the paper), or `"mean"`, the mean
        of the token vectors (for backbones pretrained with mean pooling, such as all-MiniLM-L6-v2,
        whose lower layers leave [CLS] nearly constant).
    """

    def __init__(
        self,
        encoder: LayerwiseEncoder,
        layer_indices: list[int],
        num_labels: int,
        dropout: float = 0.1,
        pooling: str = "cls",
    ) -> None:
        super().__init__()
        layers = list(layer_indices)
        if not layers or layers != sorted(set(layers)):
            raise ValueError(f"layer_indices must be non-empty and strictly increasing, got {layers}")
        if layers[0] < 0 or layers[-1] >= encoder.num_layers:
            raise ValueError(
                f"layer_indices {layers} out of range: the backbone has layers 0..{encoder.num_layers - 1}"
            )
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        self.encoder = encoder
        self.layer_indices = layers
        self.pooling = pooling
        self.exits = nn.ModuleList(ExitHead(k, encoder.hidden_size, num_labels, dropout) for k in layers)
        self.register_buffer("temperatures", torch.ones(len(layers)))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        early_exit_gradient: float = 1.0,
    ) -> list[torch.Tensor]:
        """
        Every exit's (uncalibrated) logits, running layers 0..last exit once.

        `early_exit_gradient` scales the gradient that the exits before the last send into the
        encoder (their own heads always get their full gradient): 1 trains the encoder with every
        exit's loss (the paper), 0 with the last exit's alone. Values are unchanged either way.
        """
        hidden, mask = self.encoder.embed(input_ids, attention_mask, token_type_ids)
        # The deepest layer an earlier exit reads, where its gradient is scaled (-1: none is).
        earlier = early_exit_gradient != 1.0 and len(self.layer_indices) > 1
        scaled_up_to = self.layer_indices[-2] if earlier else -1
        pooled, scaled, logits = [], [], []
        for layer in range(self.layer_indices[-1] + 1):
            hidden = self.encoder.layer(layer, hidden, mask)
            pooled.append(self.pool(hidden, attention_mask))
            if layer <= scaled_up_to:
                detached = pooled[-1].detach()
                scaled.append(detached + early_exit_gradient * (pooled[-1] - detached))
            if layer in self.layer_indices:
                last = layer == self.layer_indices[-1]
                reads = scaled if scaled and not last else pooled
                logits.append(self.exits[self.layer_indices.index(layer)](reads))
        return logits

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per instance from a layer's hidden states: [CLS], or the mean over real tokens."""
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask[:, : hidden.size(1), None].to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1)

    @staticmethod
    def loss(all_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The training loss: the sum over exits of each exit's mean cross-entropy."""
        return sum(F.cross_entropy(logits, labels) for logits in all_logits)  # type: ignore[return-value]
