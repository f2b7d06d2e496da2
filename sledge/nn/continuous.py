"""
Layer-level continuous batching: rows from different requests merge wherever they reach the same layer.

The batched runner (`early_exit`) runs one batch from embeddings to exits; rows that leave make it
thinner, and a new request waits for the whole batch. `LayerBatcher` instead keeps groups of rows in
flight, each at its own next layer: a request's rows start as one group before layer 0. Each `step`
runs ONE layer for the rows that need that same layer, up to `max_rows` of them, merged into one call
whichever requests they came from and whenever they arrived; rows that leave at that layer's exit are
returned at once, the rest stay together as one group. When more rows wait for the layer than one
call takes, the call takes the oldest row and the rows nearest its length: a call is as wide as its
longest row, and on AG News a random 32 rows are half padding (their mean length is 53% of their
longest), which costs as much as real tokens. So a new request joins
the moment it is added, and a thin group of deep rows is joined by the rows catching up with it.

Which layer runs: the one with the most rows waiting for it (counting at most `max_rows`; among
equals, the deeper, whose rows are nearer their answer), so that layers run in full calls and
shallow rows catch up with thin deep groups to share their layers; a group passed over `max_skips`
times runs next (the oldest such), so that no row waits for ever. Optionally (`deadline_ms` > 0),
once groups have been in flight that long or longer (their oldest row), only they are counted, so
late rows go first, but only while no more than `max_rows` rows are in flight: late groups are thin,
and running them first cost a quarter of the throughput at 2x the standard model's saturation load
on AG News when it applied at every load (measured through a load generator that was itself slow
under load: see the README); under heavy load the plain rule keeps the calls full.

The model's backend (`backend_of`) computes, one layer a call. Each row's computation depends on its
own tokens only (padding is masked), so its outputs and exit
are those of batch-1 inference (up to float rounding). The per-row work is tensor work on groups:
merging pads and concatenates a few groups, leaving rows are removed by one index selection.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sledge.nn.backends import backend_of
from sledge.nn.exit_policies import ExitPolicy, ExitView
from sledge.nn.model import MultiExitClassifier


@dataclass
class _Group:
    """Rows in flight together, all before the same layer; every tensor has the rows first."""

    keys: list[Any]
    hidden: torch.Tensor  # (rows, width, hidden) after the layers run so far (embeddings at first)
    attention: torch.Tensor  # (rows, width) the 0/1 mask, right-padded
    pooled: list[torch.Tensor]  # one (rows, hidden) tensor per layer run
    state: dict[str, torch.Tensor]  # the policy's per-row state, the rows' settings included
    skip_earlier: torch.Tensor  # (rows,) bool: its setting lets the row leave only at the last exit
    order: int  # arrival order of its oldest row
    arrived: float  # when its oldest row was added (`LayerBatcher.clock`, seconds)
    layer: int = 0  # the next layer to run
    skipped: int = 0  # steps that ran another layer since this group last ran

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, index: torch.Tensor) -> "_Group":
        """The rows at `index` (in that order), with the padding none of them needs cut."""
        attention = self.attention.index_select(0, index)
        width = int(attention.sum(dim=1).max())
        return _Group(
            keys=[self.keys[i] for i in index.tolist()],
            hidden=self.hidden.index_select(0, index)[:, :width],
            attention=attention[:, :width],
            pooled=[vector.index_select(0, index) for vector in self.pooled],
            state={key: value.index_select(0, index) for key, value in self.state.items()},
            skip_earlier=self.skip_earlier.index_select(0, index),
            order=self.order,
            arrived=self.arrived,
            layer=self.layer,
            skipped=self.skipped,
        )


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
    max_skips : `int`, optional
        How many steps of other layers a group may wait before it runs next; by default the number of
        layers the model runs.
    deadline_ms : `float`, optional (default = `0.0`)
        Groups in flight this long or longer are served before the others while at most `max_rows`
        rows are in flight (0: every group is late, so the plain rule holds).
    clock : `Callable[[], float]`, optional (default = `time.monotonic`)
        The time in seconds, read when rows are added and when a layer is chosen.
    """

    def __init__(
        self,
        model: MultiExitClassifier,
        policy: ExitPolicy,
        max_rows: int = 32,
        max_skips: int | None = None,
        deadline_ms: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(model, MultiExitClassifier):
            raise ValueError("layer-level batching runs a multi-exit model layer by layer, not a cascade")
        self.model, self.policy, self.max_rows = model, policy, max_rows
        self.max_skips = model.layer_indices[-1] + 1 if max_skips is None else max_skips
        self.deadline = deadline_ms / 1000
        self.clock = clock
        self.groups: list[_Group] = []
        self._arrivals = 0
        self.last_group = 0  # rows the last step ran

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups)

    def clear(self) -> None:
        """Drop every row in flight."""
        self.groups.clear()

    def discard(self, gone: Callable[[Any], bool]) -> int:
        """Drop the rows in flight whose key `gone` says is gone (their requests were given up); how many."""
        kept, dropped = [], 0
        for group in self.groups:
            rows = [row for row, key in enumerate(group.keys) if not gone(key)]
            dropped += len(group) - len(rows)
            if len(rows) == len(group):
                kept.append(group)
            elif rows:
                kept.append(group.select(torch.tensor(rows)))
        self.groups = kept
        return dropped

    @torch.no_grad()
    def add(
        self,
        keys: list[Any],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        settings: list[float | None] | None = None,
    ) -> None:
        """Embed new rows (right-padded) and put them in flight, as one group, before layer 0."""
        hidden = backend_of(self.model).embed(input_ids, attention_mask, token_type_ids)
        given = [None] * len(keys) if settings is None else settings
        values = [self.policy.value() if s is None else float(s) for s in given]
        exits = len(self.model.layer_indices)
        state = self.policy.start(len(keys), input_ids.device)
        state[self.policy.setting] = torch.tensor(values, device=input_ids.device)
        skip = [self.policy.with_setting(value).never_leaves_early(exits) for value in values]
        self.groups.append(
            _Group(list(keys), hidden, attention_mask, [], state,
                   torch.tensor(skip, device=input_ids.device), self._arrivals, self.clock())
        )
        self._arrivals += 1

    @torch.no_grad()
    def step(self) -> list[Finished]:
        """Run one layer for the rows chosen (see the module's notes); return the rows that left."""
        if not self.groups:
            return []
        layer = self._choose()
        taken = self._pack(layer)
        for group in self.groups:
            group.skipped += 1
        group = _merge(taken)
        self.last_group = len(group)
        backend = backend_of(self.model)
        mask = backend.mask(group.attention)
        group.hidden, pooled = backend.layers(layer, layer, group.hidden, mask, group.attention)
        group.pooled += pooled
        group.layer, group.skipped = layer + 1, 0
        finished, kept = self._exit(layer, group) if layer in self.model.layer_indices else ([], group)
        if kept is not None:
            self.groups.append(kept)
        return finished

    def _pack(self, layer: int) -> list[_Group]:
        """
        Take the rows of one call of `layer` out of their groups: all of them if they fit in
        `max_rows`, else the oldest row and the rows nearest its length (then the older first).
        """
        candidates = sorted((g for g in self.groups if g.layer == layer), key=lambda g: g.order)
        picked = [list(range(len(group))) for group in candidates]  # each group's rows in the call
        if sum(map(len, picked)) > self.max_rows:  # similar lengths: little padding in the call
            lengths = [group.attention.sum(dim=1).tolist() for group in candidates]
            target = lengths[0][0]
            rows = [(c, r) for c, group_rows in enumerate(picked) for r in group_rows]
            nearest = sorted(rows[1:], key=lambda row: (abs(lengths[row[0]][row[1]] - target), row))
            picked = [[] for _ in candidates]
            for c, r in sorted([rows[0], *nearest[: self.max_rows - 1]]):
                picked[c].append(r)
        taken = []
        for group, rows in zip(candidates, picked):
            if not rows:
                continue
            self.groups.remove(group)
            if len(rows) < len(group):  # the rest of it waits for another call of this layer
                chosen = set(rows)
                rest = [r for r in range(len(group)) if r not in chosen]
                self.groups.append(group.select(torch.tensor(rest)))
                group = group.select(torch.tensor(rows))
            taken.append(group)
        return taken

    def _choose(self) -> int:
        """The next layer: a starved group's, else the one with the most (late) rows, the deeper of equals."""
        starved = [group for group in self.groups if group.skipped >= self.max_skips]
        if starved:
            return min(starved, key=lambda group: group.order).layer
        now = self.clock()
        light = len(self) <= self.max_rows
        late = [group for group in self.groups if now - group.arrived >= self.deadline] if light else []
        counted = late or self.groups
        waiting: dict[int, int] = {}
        for group in counted:
            waiting[group.layer] = waiting.get(group.layer, 0) + len(group)
        return max(waiting, key=lambda layer: (min(waiting[layer], self.max_rows), layer))

    def _exit(self, layer: int, group: _Group) -> tuple[list[Finished], _Group | None]:
        """The exit after `layer`: the rows that leave (all at the last exit) and the group of the rest."""
        model = self.model
        exit_index = model.layer_indices.index(layer)
        last = exit_index == len(model.layer_indices) - 1
        if not last and bool(group.skip_earlier.all()):  # nobody here may leave before the last exit
            return [], group
        logits, certainty = backend_of(model).exit(exit_index, group.pooled, group.hidden, group.attention)
        temperature = model.temperatures[exit_index]
        if last:
            leaving = torch.ones(len(group), dtype=torch.bool)
        else:
            view = ExitView(exit_index, logits, temperature, certainty, model.regression)
            leaving = self.policy.leaves(view, group.state) & ~group.skip_earlier
        gone = torch.nonzero(leaving).flatten()
        probs = None if model.regression else torch.softmax(logits[gone] / temperature, dim=-1)
        finished = [
            Finished(group.keys[row], exit_index, logits[row], None if probs is None else probs[i],
                     None if certainty is None else certainty[row])
            for i, row in enumerate(gone.tolist())
        ]
        kept = torch.nonzero(~leaving).flatten()
        return finished, (group.select(kept) if kept.numel() else None)


def _merge(groups: list[_Group]) -> _Group:
    """One group of the rows of `groups` (all before the same layer), padded to the widest."""
    if len(groups) == 1:
        return groups[0]
    width = max(group.hidden.size(1) for group in groups)
    # A group whose rows all skipped an earlier exit never ran the policy there, so it may lack state
    # the policy added; those rows can only leave at the last exit, where no state is read: zeros.
    template = {key: value for group in groups for key, value in group.state.items()}
    state = {
        key: torch.cat([
            group.state.get(key, like.new_zeros((len(group), *like.shape[1:]))) for group in groups
        ])
        for key, like in template.items()
    }
    return _Group(
        keys=[key for group in groups for key in group.keys],
        hidden=torch.cat([F.pad(g.hidden, (0, 0, 0, width - g.hidden.size(1))) for g in groups]),
        attention=torch.cat([F.pad(g.attention, (0, width - g.attention.size(1))) for g in groups]),
        pooled=[torch.cat(vectors) for vectors in zip(*(group.pooled for group in groups))],
        state=state,
        skip_earlier=torch.cat([group.skip_earlier for group in groups]),
        order=min(group.order for group in groups),
        arrived=min(group.arrived for group in groups),
        layer=groups[0].layer,
    )
