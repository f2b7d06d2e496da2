"""The multi-exit classifier: a layer-by-layer encoder with exits on chosen layers (Schwartz et al. 2020)."""

import torch
import torch.nn.functional as F
from torch import nn

from sledge.errors import SledgeError
from sledge.nn.encoder import LayerwiseEncoder
from sledge.nn.exit_heads import ExitHead, ScalarMix, build_head

__all__ = [
    "ExitHead", "MultiExitClassifier", "ScalarMix", "difficulty_margin_loss", "lte_loss", "lte_targets",
    "scale_gradient",
]


def scale_gradient(tensor: torch.Tensor, scale: float) -> torch.Tensor:
    """`tensor` unchanged in value, with the gradient that flows back through it multiplied by `scale`."""
    if scale == 1.0:
        return tensor
    detached = tensor.detach()
    return detached + scale * (tensor - detached)


class MultiExitClassifier(nn.Module):
    """
    A transformer classifier (or regressor) with exits on several layers, trained with the sum of
    the exits' losses.

    A model whose last exit is on layer k never runs the layers after k. `temperatures` holds one
    calibration temperature per exit (1 until calibrated); they scale confidences, never argmaxes.
    With `learn_to_exit`, one linear layer and a sigmoid shared by all exits (BERxiT's learning-to-exit
    module, `lte`) read each exit's features (the linear head's mixed pooled vector) and predict how
    certain that exit is.

    Parameters
    ----------
    encoder : `LayerwiseEncoder`
        The backbone, run layer by layer.
    layer_indices : `list[int]`
        0-based transformer layers carrying an exit, strictly increasing.
    num_labels : `int`
        Number of classes; 1 for regression.
    dropout : `float`, optional (default = `0.1`)
        Dropout in each exit head.
    pooling : `str`, optional (default = `"cls"`)
        What an exit reads of each layer: `"cls"`, the [CLS] vector (the paper), or `"mean"`, the mean
        of the token vectors (for backbones pretrained with mean pooling, such as all-MiniLM-L6-v2,
        whose lower layers leave [CLS] nearly constant).
    regression : `bool`, optional (default = `False`)
        Each exit predicts one score (`num_labels` must be 1), trained with the squared error.
    learn_to_exit : `bool`, optional (default = `False`)
        Add the LTE module.
    exit_head : `dict`, optional
        The kind of every exit head: `{"type": "linear"}` (the paper's, the default), `{"type": "mlp"}`
        or `{"type": "attention"}`, with the head's own options (see `sledge.nn.exit_heads`).
    """

    def __init__(
        self,
        encoder: LayerwiseEncoder,
        layer_indices: list[int],
        num_labels: int,
        dropout: float = 0.1,
        pooling: str = "cls",
        regression: bool = False,
        learn_to_exit: bool = False,
        exit_head: dict | None = None,
    ) -> None:
        super().__init__()
        layers = list(layer_indices)
        if not layers or layers != sorted(set(layers)):
            raise SledgeError(f"model.layer_indices must be non-empty and strictly increasing, got {layers}")
        if layers[0] < 0 or layers[-1] >= encoder.num_layers:
            raise SledgeError(
                f"model.layer_indices {layers} out of range: the backbone has layers 0.."
                f"{encoder.num_layers - 1}"
            )
        if pooling not in ("cls", "mean"):
            raise SledgeError(f"model.pooling must be 'cls' or 'mean', got {pooling!r}")
        if regression and num_labels != 1:
            raise ValueError(f"a regression model predicts 1 score per exit, not {num_labels}")
        self.encoder = encoder
        self.layer_indices = layers
        self.pooling = pooling
        self.regression = regression
        self.num_labels = num_labels
        self.exits = nn.ModuleList(
            build_head(exit_head, k, encoder.hidden_size, num_labels, dropout) for k in layers
        )
        self.lte = nn.Linear(self.exits[0].feature_size, 1) if learn_to_exit else None
        self.register_buffer("temperatures", torch.ones(len(layers)))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        early_exit_gradient: float = 1.0,
    ) -> list[torch.Tensor]:
        """Every exit's (uncalibrated) logits, running layers 0..last exit once (see `forward_all`)."""
        return self.forward_all(input_ids, attention_mask, token_type_ids, early_exit_gradient)[0]

    def forward_all(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        early_exit_gradient: float = 1.0,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """
        Every exit's (uncalibrated) logits, and with the LTE module every exit's certainty (else
        None), running layers 0..last exit once.

        `early_exit_gradient` scales the gradient that the exits before the last (and the LTE
        module, at every exit) send into the encoder; their own heads always get their full gradient:
        1 trains the encoder with every exit's loss (the paper), 0 with the last exit's alone.
        Values are unchanged either way.
        """
        hidden, mask = self.encoder.embed(input_ids, attention_mask, token_type_ids)
        # The deepest layer an earlier exit reads, where its gradient is scaled (-1: none is).
        earlier = early_exit_gradient != 1.0 and len(self.layer_indices) > 1
        scaled_up_to = self.layer_indices[-2] if earlier else -1
        pooled, scaled, logits, certainties = [], [], [], []
        for layer in range(self.layer_indices[-1] + 1):
            hidden = self.encoder.layer(layer, hidden, mask)
            pooled.append(self.pool(hidden, attention_mask))
            if layer <= scaled_up_to:
                scaled.append(scale_gradient(pooled[-1], early_exit_gradient))
            if layer in self.layer_indices:
                last = layer == self.layer_indices[-1]
                head = self.exits[self.layer_indices.index(layer)]
                if last:
                    features = head.features(pooled, hidden, attention_mask)
                else:
                    states = scale_gradient(hidden, early_exit_gradient)
                    features = head.features(scaled or pooled, states, attention_mask)
                logits.append(head.classify(features))
                if self.lte is not None:
                    certainties.append(self.certainty(scale_gradient(features, early_exit_gradient)))
        return logits, (certainties if self.lte is not None else None)

    def certainty(self, features: torch.Tensor) -> torch.Tensor:
        """The LTE module's certainty, in (0, 1), for an exit's mixed pooled vectors: (batch,)."""
        if self.lte is None:
            raise ValueError("this model has no learning-to-exit module (learn_to_exit was off)")
        return torch.sigmoid(self.lte(features)).squeeze(-1)

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One vector per instance from a layer's hidden states: [CLS], or the mean over real tokens."""
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = attention_mask[:, : hidden.size(1), None].to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1)

    @staticmethod
    def exit_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One exit's loss: mean cross-entropy for class labels, mean squared error for float targets."""
        if labels.is_floating_point():
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return F.cross_entropy(logits, labels)

    @staticmethod
    def loss(all_logits: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """The training loss: the sum over exits of each exit's mean loss (`exit_loss`)."""
        return sum(MultiExitClassifier.exit_loss(logits, labels) for logits in all_logits)  # type: ignore


def lte_targets(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """
    BERxiT's target certainty of one exit, (batch,): for class labels 1 where the exit's argmax is
    the gold label, else 0; for float targets 1 - tanh(|prediction - gold|). No gradient flows back.
    """
    logits = logits.detach()
    if labels.is_floating_point():
        return 1.0 - torch.tanh((logits.squeeze(-1) - labels).abs())
    return (logits.argmax(dim=-1) == labels).to(logits.dtype)


def lte_loss(
    certainties: list[torch.Tensor], all_logits: list[torch.Tensor], labels: torch.Tensor
) -> torch.Tensor:
    """The LTE module's loss: the sum over exits of the mean squared error to `lte_targets`."""
    pairs = zip(certainties, all_logits)
    return sum(F.mse_loss(certainty, lte_targets(logits, labels)) for certainty, logits in pairs)  # type: ignore


def difficulty_margin_loss(confidence: torch.Tensor, easy: torch.Tensor, margin: float) -> torch.Tensor:
    """
    CascadeBERT's difficulty-aware regularisation for one exit: over the pairs (i, j) of the batch with
    g = easy_i - easy_j in {+1, -1} (one easy, one hard), the mean of max(0, -g (c_i - c_j) + margin),
    so an easy instance's confidence should exceed a hard one's by `margin`. 0 without such pairs.
    """
    g = easy.to(confidence.dtype)[:, None] - easy.to(confidence.dtype)[None, :]
    pairs = g != 0
    if not pairs.any():
        return confidence.sum() * 0.0
    hinge = torch.relu(-g * (confidence[:, None] - confidence[None, :]) + margin)
    return hinge[pairs].mean()
