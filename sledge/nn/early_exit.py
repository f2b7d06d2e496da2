"""Early-exit inference: each instance leaves at the first exit confident enough, batch 1 or batched."""

import torch

from sledge.errors import SledgeError
from sledge.nn.backends import backend_of
from sledge.nn.cascade import Cascade
from sledge.nn.exit_policies import ConfidencePolicy, ExitPolicy, ExitView
from sledge.nn.model import MultiExitClassifier
from sledge.nn.output import EarlyExitOutput

__all__ = ["EarlyExitOutput", "all_exits", "check_threshold", "early_exit", "exits_at_threshold",
           "full_pass_views"]


def check_threshold(threshold: float, name: str = "confidence_threshold") -> float:
    """`threshold` as a float; a clear error (naming `name`) if it is not a number in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise SledgeError(f"{name} must be a number in [0, 1], got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise SledgeError(f"{name} must lie in [0, 1], got {threshold}")
    return float(threshold)


@torch.no_grad()
def early_exit(
    model: "MultiExitClassifier | Cascade",
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
    threshold: float = 1.0,
    last_exit: int | None = None,
    policy: ExitPolicy | None = None,
    row_settings: torch.Tensor | None = None,
) -> EarlyExitOutput:
    """
    Run `model` layer by layer; at each exit, the instances that `policy` lets leave (by default
    `ConfidencePolicy(threshold)`: calibrated max-softmax probability >= `threshold`) are removed from
    the running batch: hidden states, masks, the history of pooled vectors and the policy's per-row
    state are compacted, and padding no longer needed is cut. Results are written back to the
    instances' original positions. Nothing is computed twice. Inputs must be right-padded.
    `last_exit` (an exit position) stops there instead of at the model's last exit. `row_settings`
    gives each row its own value of the policy's setting (e.g. its own threshold).

    The model's backend (`backend_of`: torch unless `use_backend` chose another) computes; layers
    run in segments, from one exit to the next (straight to the last exit when nobody may leave
    earlier).

    On CUDA the host waits for the device once per exit (to learn how many leave), never per layer;
    when the policy lets nobody leave early (threshold 1), the earlier exits are skipped and it never
    waits.
    """
    policy = ConfidencePolicy(check_threshold(threshold)) if policy is None else policy
    if not isinstance(model, MultiExitClassifier):  # a cascade of complete models runs its members
        return model.early_exit(input_ids, attention_mask, token_type_ids, policy, last_exit, row_settings)
    backend = backend_of(model)
    batch_size = input_ids.size(0)
    device = input_ids.device
    hidden = backend.embed(input_ids, attention_mask, token_type_ids)
    mask = backend.mask(attention_mask)
    lengths = attention_mask.sum(dim=1)
    rows = torch.arange(batch_size, device=device)  # original position of each running row
    num_labels = model.num_labels
    out_logits = torch.empty(batch_size, num_labels, device=device, dtype=hidden.dtype)
    out_exit = torch.empty(batch_size, dtype=torch.long, device=device)
    out_certainty = None if model.lte is None else torch.empty(batch_size, device=device, dtype=hidden.dtype)
    pooled: list[torch.Tensor] = []
    last = len(model.layer_indices) - 1 if last_exit is None else last_exit
    skip_earlier = not policy.may_leave_early(last + 1, row_settings)
    state = policy.start(batch_size, device)
    if row_settings is not None:
        state[policy.setting] = row_settings.to(device)
    first = 0  # the next layer to run
    for exit_index in range(last + 1):
        if exit_index < last and skip_earlier:  # nobody leaves before the last exit
            continue
        layer = model.layer_indices[exit_index]
        hidden, more = backend.layers(first, layer, hidden, mask, attention_mask)
        pooled += more
        first = layer + 1
        logits, certainty = backend.exit(exit_index, pooled, hidden, attention_mask)
        if exit_index == last:
            gone, kept = rows, None
        else:
            view = ExitView(exit_index, logits, model.temperatures[exit_index], certainty, model.regression)
            leaving = policy.leaves(view, state)
            # The one host synchronisation of this exit: how many leave, and the width the rest need.
            num_leaving, width = torch.stack([leaving.sum(), lengths.masked_fill(leaving, 0).max()]).tolist()
            if num_leaving == 0:
                continue
            order = torch.argsort(leaving.to(torch.int8), descending=True, stable=True)  # leavers first
            gone, kept = order[:num_leaving], order[num_leaving:]
            logits = logits.index_select(0, gone)
            certainty = None if certainty is None else certainty.index_select(0, gone)
            gone = rows.index_select(0, gone)
        out_logits.index_copy_(0, gone, logits)
        out_exit.index_fill_(0, gone, exit_index)
        if out_certainty is not None:
            out_certainty.index_copy_(0, gone, certainty)
        if kept is None or kept.numel() == 0:
            break
        rows, lengths = rows.index_select(0, kept), lengths.index_select(0, kept)
        hidden = hidden.index_select(0, kept)[:, :width]
        attention_mask = attention_mask.index_select(0, kept)[:, :width]
        mask = backend.mask(attention_mask)  # MPNet's bias is per length
        pooled = [vector.index_select(0, kept) for vector in pooled]
        state = {key: value.index_select(0, kept) for key, value in state.items()}
    probs = None
    if not model.regression:
        probs = torch.softmax(out_logits / model.temperatures[out_exit][:, None], dim=-1)
    return EarlyExitOutput(logits=out_logits, probs=probs, exit_index=out_exit, certainty=out_certainty)


@torch.no_grad()
def all_exits(
    model: "MultiExitClassifier | Cascade",
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """
    One full pass on the model's backend: every exit's uncalibrated logits (a cascade: every member's)
    and, with the LTE module, every exit's certainty (else None). What sweeps and calibration read.
    """
    if isinstance(model, Cascade):
        members = [backend_of(member).all_exits(input_ids, attention_mask, token_type_ids)[0][-1]
                   for member in model.members]
        return members, None
    return backend_of(model).all_exits(input_ids, attention_mask, token_type_ids)


def full_pass_views(
    model: MultiExitClassifier, logits: torch.Tensor, certainties: torch.Tensor | None
) -> list[ExitView]:
    """
    What a policy sees at each exit, for all rows, from one full pass: `logits` (exits, rows,
    num_labels) and `certainties` (exits, rows) or None. For `simulate_exits`.
    """
    return [
        ExitView(j, logits[j], model.temperatures[j].to(logits.device),
                 None if certainties is None else certainties[j], model.regression)
        for j in range(logits.size(0))
    ]


def exits_at_threshold(confidences: torch.Tensor, threshold: float) -> torch.Tensor:
    """
    The exit early exit takes for each instance, from every exit's calibrated confidence
    (`confidences[i, j]`: instance i at exit j) computed in one full pass: the first exit whose
    confidence is >= `threshold` (none when the threshold is 1), else the last.
    """
    threshold = check_threshold(threshold)
    leaving = confidences >= threshold if threshold < 1.0 else torch.zeros_like(confidences, dtype=torch.bool)
    leaving[:, -1] = True
    return leaving.int().argmax(dim=1)
