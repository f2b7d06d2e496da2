"""
Layer-level continuous batching: rows from different requests merge wherever they reach the same layer.

The batched runner (`early_exit`) runs one batch from embeddings to exits; rows that leave make it
thinner, and a new request waits for the whole batch. `LayerBatcher` instead keeps every row in
flight on its own: its hidden states, its history of pooled vectors, its next layer and its policy
state. Each `step` runs ONE layer for a group of rows that all need that same layer (the group of the
oldest row in flight, up to `max_rows` rows, oldest first), however many requests they came from and
whenever they arrived; rows that leave at that layer's exit are returned at once. So new rows join
the moment they are added, and deep layers are shared by the rows of many requests.

Each row's computation depends on its own tokens only (padding is masked), so its outputs and exit
are those of batch-1 inference (up to float rounding).
"""

from dataclasses import dataclass, field
from typing import Any

import torch

from sledge.nn.exit_policies import ExitPolicy, ExitView
from sledge.nn.model import MultiExitClassifier


@dataclass
class _Row:
    key: Any
    hidden: torch.Tensor  # (length, hidden) after the layers run so far (embeddings at first)
    attention: torch.Tensor  # (length,) the 0/1 mask
    state: dict[str, torch.Tensor]  # the policy's per-row state (its setting included), 0-dimensional
    skip_earlier: bool  # its setting lets it leave only at the last exit
    order: int  # arrival order
    pooled: list[torch.Tensor] = field(default_factory=list)  # one (hidden,) vector per layer run
    layer: int = 0  # the next layer to run


@dataclass
class Finished:
    """A row that left: its key, the exit taken and its outputs (as `EarlyExitOutput` has them)."""

    key: Any
    exit_index: int
    logits: torch.Tensor  # (num_labels,) uncalibrated
    probs: torch.Tensor | None  # calibrated; None for regression
    certainty: torch.Tensor | None


class LayerBatcher:
    """
    Continuous batching of a `MultiExitClassifier` under an exit policy, one layer per `step`.

    Parameters
    ----------
    model : `MultiExitClassifier`
        The model, in evaluation mode.
    policy : `ExitPolicy`
        The exit policy; each row may have its own setting (`add(..., settings=...)`).
    max_rows : `int`
        The most rows one layer call takes.
    """

    def __init__(self, model: MultiExitClassifier, policy: ExitPolicy, max_rows: int = 32) -> None:
        if not isinstance(model, MultiExitClassifier):
            raise ValueError("layer-level batching runs a multi-exit model layer by layer, not a cascade")
        self.model, self.policy, self.max_rows = model, policy, max_rows
        self.rows: list[_Row] = []
        self._arrivals = 0
        self.last_group = 0  # rows the last step ran

    def __len__(self) -> int:
        return len(self.rows)

    @torch.no_grad()
    def add(
        self,
        keys: list[Any],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        settings: list[float | None] | None = None,
    ) -> None:
        """Embed new rows (right-padded) and put them in flight before layer 0."""
        hidden, _ = self.model.encoder.embed(input_ids, attention_mask, token_type_ids)
        exits = len(self.model.layer_indices)
        for position, key in enumerate(keys):
            length = int(attention_mask[position].sum())
            given = None if settings is None else settings[position]
            setting = self.policy.value() if given is None else float(given)
            state = {name: value[0] for name, value in self.policy.start(1, input_ids.device).items()}
            state[self.policy.setting] = torch.tensor(setting, device=input_ids.device)
            skip = self.policy.with_setting(setting).never_leaves_early(exits)
            self._arrivals += 1
            self.rows.append(_Row(key, hidden[position, :length], attention_mask[position, :length], state,
                                  skip, self._arrivals))

    @torch.no_grad()
    def step(self) -> list[Finished]:
        """Run one layer for the group of the oldest row in flight; return the rows that left."""
        if not self.rows:
            return []
        model = self.model
        layer = min(self.rows, key=lambda row: row.order).layer
        group = sorted((row for row in self.rows if row.layer == layer), key=lambda row: row.order)
        group = group[: self.max_rows]
        self.last_group = len(group)
        width = max(row.attention.numel() for row in group)
        hidden = torch.stack([_pad(row.hidden, width) for row in group])
        attention = torch.stack([_pad(row.attention, width) for row in group])
        hidden = model.encoder.layer(layer, hidden, model.encoder.layer_mask(attention, hidden.dtype))
        pooled = model.pool(hidden, attention)
        for position, row in enumerate(group):
            row.hidden = hidden[position, : row.attention.numel()]
            row.pooled.append(pooled[position])
            row.layer += 1
        if layer not in model.layer_indices:
            return []
        exit_index = model.layer_indices.index(layer)
        last = exit_index == len(model.layer_indices) - 1
        deciding = [position for position, row in enumerate(group) if last or not row.skip_earlier]
        if not deciding:
            return []
        rows = [group[p] for p in deciding]
        leaving = self._exit(exit_index, last, rows, hidden[deciding], attention[deciding])
        gone = {id(row) for row, _ in leaving}
        self.rows = [row for row in self.rows if id(row) not in gone]
        return [finished for _, finished in leaving]

    def _exit(self, exit_index: int, last: bool, rows: list[_Row], hidden: torch.Tensor,
              attention: torch.Tensor) -> list[tuple[_Row, Finished]]:
        """The exit's outputs for `rows`; the policy's decision (all leave at the last exit)."""
        model = self.model
        head = model.exits[exit_index]
        pooled = [torch.stack([row.pooled[j] for row in rows]) for j in range(len(rows[0].pooled))]
        features = head.features(pooled, hidden, attention)
        logits = head.classify(features)
        certainty = None if model.lte is None else model.certainty(features)
        temperature = model.temperatures[exit_index]
        if last:
            leaving = torch.ones(len(rows), dtype=torch.bool)
        else:  # rows deciding at the same exit have decided at the same exits before: the same state keys
            state = {key: torch.stack([row.state[key] for row in rows]) for key in rows[0].state}
            view = ExitView(exit_index, logits, temperature, certainty, model.regression)
            leaving = self.policy.leaves(view, state)
            for position, row in enumerate(rows):  # the policy may have updated or added state
                row.state = {key: value[position] for key, value in state.items()}
        out = []
        for position in torch.nonzero(leaving).flatten().tolist():
            probs = None if model.regression else torch.softmax(logits[position] / temperature, dim=-1)
            certain = None if certainty is None else certainty[position]
            finished = Finished(rows[position].key, exit_index, logits[position], probs, certain)
            out.append((rows[position], finished))
        return out


def _pad(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """`tensor` zero-padded along its first dimension to `width`."""
    missing = width - tensor.size(0)
    if missing == 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((missing, *tensor.shape[1:]))])
