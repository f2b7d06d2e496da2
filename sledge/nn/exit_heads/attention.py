"""FastBERT's kind of exit: one small self-attention layer over the exit layer's token states."""

import math

import torch
import torch.nn.functional as F
from torch import nn

from sledge.errors import SledgeError
from sledge.nn.exit_heads.base import ExitHead


class AttentionExitHead(ExitHead):
    """
    After Liu et al. (2020, FastBERT): the token states of the exit's layer are projected to `size`
    dimensions, go through one self-attention layer with `heads` heads (a residual connection and
    layer norm after it; padding is never attended to), are averaged over the real tokens, and after
    dropout a linear layer classifies the average. It reads the whole sequence of its own layer, not
    just one vector per layer, and costs a small attention layer per exit.

    Parameters
    ----------
    layer, hidden_size, num_labels, dropout
        As the linear head's.
    size : `int`, optional (default = `128`)
        Width of the projected token states.
    heads : `int`, optional (default = `2`)
        Attention heads; `size` must be a multiple of it.
    """

    name = "attention"
    reads_tokens = True

    def __init__(
        self, layer: int, hidden_size: int, num_labels: int, dropout: float, size: int = 128, heads: int = 2
    ) -> None:
        super().__init__()
        if size % heads:
            raise SledgeError(
                f"model.exit_head.size ({size}) must be a multiple of model.exit_head.heads ({heads})"
            )
        self.layer = layer
        self.feature_size = size
        self.project = nn.Linear(hidden_size, size)
        self.attention = nn.MultiheadAttention(size, heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(size, num_labels)

    def features(
        self, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask[:, : hidden.size(1)]
        tokens = self.project(hidden)
        if torch.onnx.is_in_onnx_export():  # nn.MultiheadAttention would export its shapes as constants
            attended = self._attend(tokens, mask)
        else:
            attended, _ = self.attention(tokens, tokens, tokens, key_padding_mask=mask == 0,
                                         need_weights=False)
        tokens = self.norm(tokens + attended)
        weights = mask[:, :, None].to(tokens.dtype)
        return self.dropout((tokens * weights).sum(dim=1) / weights.sum(dim=1))

    def _attend(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`self.attention` (in evaluation mode) written out with matmuls, whose shapes export as dynamic."""
        attention = self.attention
        rows, length, size = tokens.shape
        heads = attention.num_heads
        projected = F.linear(tokens, attention.in_proj_weight, attention.in_proj_bias)
        query, key, value = projected.chunk(3, dim=-1)
        split = lambda x: x.reshape(rows, length, heads, size // heads).transpose(1, 2)  # noqa: E731
        scores = split(query) @ split(key).transpose(-1, -2) / math.sqrt(size // heads)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        mixed = (torch.softmax(scores, dim=-1) @ split(value)).transpose(1, 2).reshape(rows, length, size)
        return attention.out_proj(mixed)
