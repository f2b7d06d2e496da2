"""The torch backend: the model's own modules, run eagerly by PyTorch."""

from typing import Any

import torch

from sledge.nn.backends.base import Backend
from sledge.nn.quantize import runs_row_by_row


class TorchBackend(Backend):
    """
    Runs the model's pieces with its own PyTorch modules (float32, or int8 where `quantize_int8_rows`
    or `quantize_int8` replaced its linear layers), on its device (CPU or CUDA).

    After `quantize_int8_rows`, whatever sums over a row's tokens runs one row at a time over the row's
    own tokens: the layers' attention (`RowwiseAttention`), the pooling, the exit heads that read the
    token states. PyTorch's reductions over tokens follow the padded length in their last bits, and int8
    turns a last-bit change into a rounding step; this keeps batched int8 logits equal to batch 1's to
    the last bit. The linear layers, where the time goes, run on the whole batch. Float32 stays batched
    (its answers match batch 1's; its logits may differ in the last bits).

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
        lengths = self._row_lengths(hidden, attention_mask)
        pooled = []
        for index in range(first, last + 1):
            hidden = self.model.encoder.layer(index, hidden, mask)
            if lengths is None:
                pooled.append(self.model.pool(hidden, attention_mask))
            else:
                pooled.append(torch.cat([self.model.pool(hidden[row : row + 1, :length],
                                                         attention_mask[row : row + 1, :length])
                                         for row, length in enumerate(lengths)]))
        return hidden, pooled

    def exit(
        self, position: int, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        head = self.model.exits[position]
        lengths = self._row_lengths(hidden, attention_mask) if head.reads_tokens else None
        if lengths is None:
            features = head.features(pooled, hidden, attention_mask)
        else:  # each row over its own tokens, as at batch 1
            features = torch.cat([
                head.features([vector[row : row + 1] for vector in pooled], hidden[row : row + 1, :length],
                              attention_mask[row : row + 1, :length])
                for row, length in enumerate(lengths)
            ])
        certainty = None if self.model.lte is None else self.model.certainty(features)
        return head.classify(features), certainty

    def _row_lengths(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> list[int] | None:
        """Each row's own length where this batch runs row by row (int8 rows, more than one row)."""
        if hidden.size(0) == 1 or not runs_row_by_row(self.model):
            return None
        return attention_mask[:, : hidden.size(1)].sum(dim=1).tolist()
