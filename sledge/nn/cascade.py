"""CascadeBERT (Li et al. 2021): complete models of growing depth, each run only on what the last left."""

import torch
from torch import nn

from sledge.nn.backends import backend_of
from sledge.nn.exit_policies import ExitPolicy, ExitView
from sledge.nn.model import MultiExitClassifier
from sledge.nn.output import EarlyExitOutput


class Cascade(nn.Module):
    """
    A cascade of complete models, smallest first: each member is a single-exit model (its own encoder,
    one exit on its last layer, e.g. a backbone truncated to k layers and fine-tuned end to end). An
    instance runs the first member; if the policy lets it leave (by default: its calibrated confidence
    reaches the threshold) it is answered, else it runs the next member from scratch, and so on; the
    last member answers everything left.

    It has the interface of `MultiExitClassifier` that the runner, the calibration and the sweep use:
    `forward_all` gives each member's logits (its "exits"), `temperatures` one per member, and
    `layer_indices` the layers run in total when an instance leaves at each member, minus one (0-based,
    like an exit's layer: members of 2 and 6 layers give [1, 7]).

    Parameters
    ----------
    members : `list[MultiExitClassifier]`
        Single-exit models with the same labels (or all regression), smallest first.
    """

    def __init__(self, members: list[MultiExitClassifier]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a cascade needs at least 2 members, got {len(members)}")
        for position, member in enumerate(members):
            if len(member.layer_indices) != 1:
                raise ValueError(
                    f"cascade member {position} has exits on layers {member.layer_indices}; a member is a "
                    "complete single-exit model"
                )
        if len({(member.regression, member.num_labels) for member in members}) != 1:
            raise ValueError("the cascade's members must classify the same labels, or all be regression")
        self.members = nn.ModuleList(members)
        self.regression = members[0].regression
        self.num_labels = members[0].num_labels
        self.lte = None
        depths = [member.layer_indices[-1] + 1 for member in members]
        self.layer_indices = [sum(depths[: position + 1]) - 1 for position in range(len(members))]
        self.register_buffer("temperatures", torch.stack([member.temperatures[-1] for member in members]))

    def forward_all(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        early_exit_gradient: float = 1.0,
    ) -> tuple[list[torch.Tensor], None]:
        """Every member's (uncalibrated) logits on every row; no certainties."""
        logits = [member(input_ids, attention_mask, token_type_ids)[-1] for member in self.members]
        return logits, None

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        early_exit_gradient: float = 1.0,
    ) -> list[torch.Tensor]:
        return self.forward_all(input_ids, attention_mask, token_type_ids)[0]

    @torch.no_grad()
    def early_exit(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None,
        policy: ExitPolicy,
        last_exit: int | None = None,
        row_settings: torch.Tensor | None = None,
    ) -> EarlyExitOutput:
        """
        Cascade inference, batched: every member runs only on the rows no earlier member answered
        (rows that leave are taken out, with their policy state; padding no longer needed is cut).
        `last_exit` (a member position) stops there. Each member runs on its own backend (`backend_of`).
        See `sledge.nn.early_exit.early_exit`.
        """
        batch_size = input_ids.size(0)
        device = input_ids.device
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        rows = torch.arange(batch_size, device=device)
        out_logits = torch.empty(batch_size, self.num_labels, device=device)
        out_exit = torch.empty(batch_size, dtype=torch.long, device=device)
        last = len(self.members) - 1 if last_exit is None else last_exit
        skip_earlier = not policy.may_leave_early(last + 1, row_settings)
        state = policy.start(batch_size, device)
        if row_settings is not None:
            state[policy.setting] = row_settings.to(device)
        for position in range(last + 1):
            if position < last and skip_earlier:
                continue
            backend = backend_of(self.members[position])
            logits = backend.all_exits(input_ids, attention_mask, token_type_ids)[0][-1]
            out_logits = out_logits.to(logits.dtype)
            if position == last:
                out_logits.index_copy_(0, rows, logits)
                out_exit.index_fill_(0, rows, position)
                break
            view = ExitView(position, logits, self.temperatures[position], None, self.regression)
            leaving = policy.leaves(view, state)
            lengths = attention_mask.sum(dim=1)
            num_leaving, width = torch.stack([leaving.sum(), lengths.masked_fill(leaving, 0).max()]).tolist()
            if num_leaving == 0:
                continue
            order = torch.argsort(leaving.to(torch.int8), descending=True, stable=True)  # leavers first
            gone, kept = order[:num_leaving], order[num_leaving:]
            out_logits.index_copy_(0, rows.index_select(0, gone), logits.index_select(0, gone))
            out_exit.index_fill_(0, rows.index_select(0, gone), position)
            if kept.numel() == 0:
                break
            rows = rows.index_select(0, kept)
            input_ids = input_ids.index_select(0, kept)[:, :width]
            attention_mask = attention_mask.index_select(0, kept)[:, :width]
            token_type_ids = token_type_ids.index_select(0, kept)[:, :width]
            state = {key: value.index_select(0, kept) for key, value in state.items()}
        probs = None
        if not self.regression:
            probs = torch.softmax(out_logits / self.temperatures[out_exit][:, None], dim=-1)
        return EarlyExitOutput(logits=out_logits, probs=probs, exit_index=out_exit)
