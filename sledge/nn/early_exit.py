"""Early-exit inference: each instance leaves at the first exit confident enough, batch 1 or batched."""

from dataclasses import dataclass

import torch

from sledge.errors import SledgeError
from sledge.nn.model import MultiExitClassifier


def check_threshold(threshold: float, name: str = "confidence_threshold") -> float:
    """`threshold` as a float; a clear error (naming `name`) if it is not a number in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise SledgeError(f"{name} must be a number in [0, 1], got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise SledgeError(f"{name} must lie in [0, 1], got {threshold}")
    return float(threshold)


def leaves(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which instances leave at a non-final exit: confidence >= threshold; threshold 1 never leaves."""
    if threshold >= 1.0:
        return torch.zeros_like(confidence, dtype=torch.bool)
    return confidence >= threshold


@dataclass
class EarlyExitOutput:
    """Per instance: the exit taken and its outputs. `probs` are calibrated (logits / temperature)."""

    logits: torch.Tensor  # (batch, num_labels), uncalibrated logits of the exit taken
    probs: torch.Tensor  # (batch, num_labels)
    exit_index: torch.Tensor  # (batch,), position of the exit taken among the model's exits


@torch.no_grad()
def early_exit(
    model: MultiExitClassifier,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor | None = None,
    threshold: float = 1.0,
    last_exit: int | None = None,
) -> EarlyExitOutput:
    """
    Run `model` layer by layer; at each exit, the instances whose calibrated max-softmax probability
    is >= `threshold` leave, and are removed from the running batch: hidden states, masks and the
    history of pooled vectors are compacted, and padding no longer needed is cut. Results are
    written back to the instances' original positions. Nothing is computed twice. Inputs must be
    right-padded. `last_exit` (an exit position) stops there instead of at the model's last exit.

    On CUDA the host waits for the device once per exit (to learn how many leave), never per layer;
    with threshold 1 nobody can leave early, so the earlier exits are skipped and it never waits.
    """
    threshold = check_threshold(threshold)
    batch_size = input_ids.size(0)
    device = input_ids.device
    hidden, mask = model.encoder.embed(input_ids, attention_mask, token_type_ids)
    lengths = attention_mask.sum(dim=1)
    rows = torch.arange(batch_size, device=device)  # original position of each running row
    num_labels = model.exits[0].classifier.out_features
    out_logits = torch.empty(batch_size, num_labels, device=device, dtype=hidden.dtype)
    out_probs = torch.empty_like(out_logits)
    out_exit = torch.empty(batch_size, dtype=torch.long, device=device)
    pooled: list[torch.Tensor] = []
    last = len(model.layer_indices) - 1 if last_exit is None else last_exit
    exit_index = 0
    for layer in range(model.layer_indices[last] + 1):
        hidden = model.encoder.layer(layer, hidden, mask)
        pooled.append(model.pool(hidden, attention_mask))
        if layer != model.layer_indices[exit_index]:
            continue
        if exit_index < last and threshold >= 1.0:  # nobody leaves before the last exit
            exit_index += 1
            continue
        logits = model.exits[exit_index](pooled)
        probs = torch.softmax(logits / model.temperatures[exit_index], dim=-1)
        if exit_index == last:
            gone, kept = rows, None
        else:
            leaving = leaves(probs.max(dim=-1)[0], threshold)
            # The one host synchronisation of this exit: how many leave, and the width the rest need.
            num_leaving, width = torch.stack([leaving.sum(), lengths.masked_fill(leaving, 0).max()]).tolist()
            if num_leaving == 0:
                exit_index += 1
                continue
            order = torch.argsort(leaving.to(torch.int8), descending=True, stable=True)  # leavers first
            gone, kept = order[:num_leaving], order[num_leaving:]
            logits, probs = logits.index_select(0, gone), probs.index_select(0, gone)
            gone = rows.index_select(0, gone)
        out_logits.index_copy_(0, gone, logits)
        out_probs.index_copy_(0, gone, probs)
        out_exit.index_fill_(0, gone, exit_index)
        if kept is None or kept.numel() == 0:
            break
        rows, lengths = rows.index_select(0, kept), lengths.index_select(0, kept)
        hidden = hidden.index_select(0, kept)[:, :width]
        mask = mask.index_select(0, kept)[..., :width]
        attention_mask = attention_mask.index_select(0, kept)[:, :width]
        pooled = [vector.index_select(0, kept) for vector in pooled]
        exit_index += 1
    return EarlyExitOutput(logits=out_logits, probs=out_probs, exit_index=out_exit)


def exits_at_threshold(confidences: torch.Tensor, threshold: float) -> torch.Tensor:
    """
    The exit early exit takes for each instance, from every exit's calibrated confidence
    (`confidences[i, j]`: instance i at exit j) computed in one full pass: the first exit that
    `leaves`, else the last. Gives every threshold's exits without running the model again.
    """
    threshold = check_threshold(threshold)
    leaving = leaves(confidences, threshold)
    leaving[:, -1] = True
    return leaving.int().argmax(dim=1)
