"""The interface of a backend: what runs a model's embeddings, its layers and its exits."""

from typing import Any

import torch


class Backend:
    """
    What the early-exit runners (`early_exit`, `Cascade.early_exit`, `LayerBatcher`) call to compute:
    the embeddings, a segment of consecutive transformer layers (with each layer's pooled vector, what
    the exits' scalar mixes read), and an exit head. The runners keep every decision (policies, which
    rows leave, compaction, padding cut); a backend only computes, so every backend runs every policy,
    batch size and scheduler alike. Tensors in and out are torch tensors on the model's device.

    Parameters
    ----------
    model : `MultiExitClassifier`
        The model whose pieces this backend runs (in evaluation mode).
    """

    name = ""

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """The hidden states layer 0 takes, (rows, length, hidden), for right-padded inputs."""
        raise NotImplementedError

    def mask(self, attention_mask: torch.Tensor) -> Any:
        """What `layers` takes as its mask for this (rows, length) 0/1 attention mask; made again
        whenever the runner cuts rows or padding."""
        return attention_mask

    def layers(
        self, first: int, last: int, hidden: torch.Tensor, mask: Any, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run layers `first`..`last` (inclusive): the hidden states after `last`, and the pooled
        vector (rows, hidden) after each layer run."""
        raise NotImplementedError

    def exit(
        self, position: int, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Exit `position`'s uncalibrated logits (rows, labels) and, with the LTE module, its certainty
        (rows,), from the pooled vectors of layers 0..its layer and the hidden states after it."""
        raise NotImplementedError

    @torch.no_grad()
    def all_exits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Every exit's logits and (with the LTE module) certainties on every row: one full pass."""
        model = self.model
        hidden = self.embed(input_ids, attention_mask, token_type_ids)
        mask = self.mask(attention_mask)
        pooled: list[torch.Tensor] = []
        logits, certainties = [], []
        first = 0
        for position, layer in enumerate(model.layer_indices):
            hidden, more = self.layers(first, layer, hidden, mask, attention_mask)
            pooled += more
            exit_logits, certainty = self.exit(position, pooled, hidden, attention_mask)
            logits.append(exit_logits)
            certainties.append(certainty)
            first = layer + 1
        return logits, (certainties if model.lte is not None else None)

    def prepare(self, per_layer: bool = False) -> None:
        """Get ready to run every piece the batched runner uses (with `per_layer`, also one layer at a
        time, as continuous batching runs), so that no request waits for it later. Nothing for torch."""

    def describe(self) -> str:
        """The backend and its settings, for reports."""
        return self.name
