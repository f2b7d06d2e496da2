"""The torch backend: the model's own modules, run eagerly by PyTorch."""

from typing import Any

import torch

from sledge.nn.backends.base import Backend


class TorchBackend(Backend):
    """
    Runs the model's pieces with its own PyTorch modules (float32, or int8 where `quantize_int8_rows`
    or `quantize_int8` replaced its linear layers), on its device (CPU or CUDA).

    Parameters
    ----------
    model : `MultiExitClassifier`
        The model (in evaluation mode).
    """

    name = "torch"

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self.model.encoder.embed(input_ids, attention_mask, token_type_ids)[0]

    def mask(self, attention_mask: torch.Tensor) -> Any:
        dtype = self.model.encoder.transformer.get_input_embeddings().weight.dtype
        return self.model.encoder.layer_mask(attention_mask, dtype)  # MPNet's position bias: per length

    def layers(
        self, first: int, last: int, hidden: torch.Tensor, mask: Any, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pooled = []
        for index in range(first, last + 1):
            hidden = self.model.encoder.layer(index, hidden, mask)
            pooled.append(self.model.pool(hidden, attention_mask))
        return hidden, pooled

    def exit(
        self, position: int, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        head = self.model.exits[position]
        features = head.features(pooled, hidden, attention_mask)
        certainty = None if self.model.lte is None else self.model.certainty(features)
        return head.classify(features), certainty
