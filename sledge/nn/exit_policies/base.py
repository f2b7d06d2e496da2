"""The interface every exit policy implements, and what it sees of the rows at an exit."""

from dataclasses import dataclass

import torch

from sledge.errors import SledgeError


@dataclass
class ExitView:
    """What a policy sees of the rows still running at one exit."""

    index: int  # the exit's position among the model's exits
    logits: torch.Tensor  # (rows, num_labels) uncalibrated; for regression (rows, 1), the scores
    temperature: torch.Tensor  # this exit's calibration temperature (a scalar tensor)
    certainty: torch.Tensor | None  # (rows,) the LTE module's certainty, if the model has one
    regression: bool

    def probs(self, calibrated: bool = True) -> torch.Tensor:
        """The class distribution, calibrated (logits / temperature) or not."""
        return torch.softmax(self.logits / self.temperature if calibrated else self.logits, dim=-1)


class ExitPolicy:
    """
    Decides, at each exit but the last, which of the running rows leave there. The one early-exit
    runner (`sledge.nn.early_exit`) and the simulation of its exits from one full pass
    (`simulate_exits`) call the same `leaves`, so they agree by construction.

    A policy that keeps per-row state (e.g. patience counts) keeps it in the dict `start` returns, one
    tensor per key with the rows as the first dimension; the runner removes the rows that leave from
    it exactly as from the hidden states. A caller may give each row its own setting (a server's
    per-request threshold): it lies in the state under the setting's name, and `setting_of` reads it.
    Policies are small, immutable and plain Python (the AllenNLP registry of them is
    `sledge.models.ExitPolicyRegistry`).
    """

    name = ""  # the registered name
    setting = "threshold"  # the parameter a sweep varies

    def check(self, regression: bool, has_lte: bool) -> None:
        """Raise `SledgeError` (naming the policy and the reason) if it cannot apply to such a model."""

    def start(self, rows: int, device: torch.device) -> dict[str, torch.Tensor]:
        """The per-row state before the first exit."""
        return {}

    def leaves(self, view: ExitView, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """(rows,) bool: who leaves at this exit (never called at the last exit). May update `state`."""
        raise NotImplementedError

    def never_leaves_early(self, num_exits: int) -> bool:
        """True when no row can leave before the last exit: the runner then skips the earlier exits."""
        return False

    def value(self) -> float:
        """The current value of `setting`."""
        return getattr(self, self.setting)

    def setting_of(self, state: dict[str, torch.Tensor]) -> "float | torch.Tensor":
        """Each row's setting: per row where the caller gave one (`state[setting]`), else `value()`."""
        return state.get(self.setting, self.value())

    def may_leave_early(self, num_exits: int, row_settings: torch.Tensor | None = None) -> bool:
        """Whether any row can leave before the last exit, at `value()` or at each of `row_settings`."""
        if row_settings is None:
            return not self.never_leaves_early(num_exits)
        values = set(row_settings.tolist())
        return any(not self.with_setting(value).never_leaves_early(num_exits) for value in values)

    def with_setting(self, value: float) -> "ExitPolicy":
        """The same policy with `setting` set to `value`."""
        parameters = {**vars(self), self.setting: value}
        return type(self)(**parameters)

    def describe(self) -> str:
        """A label such as `confidence` or `confidence (uncalibrated)`: the policy without its setting."""
        return self.name

    def __repr__(self) -> str:
        parameters = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({parameters})"


def unit_interval(value: float, name: str) -> float:
    """`value` as a float in [0, 1], or a `SledgeError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise SledgeError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def simulate_exits(policy: ExitPolicy, views: list[ExitView]) -> torch.Tensor:
    """
    The exit each row takes under `policy`, from every exit's outputs for all rows (one full pass):
    the first exit whose `leaves` says so, else the last. What the runner does, without running it.
    """
    rows = views[0].logits.size(0)
    exits = torch.full((rows,), len(views) - 1, dtype=torch.long, device=views[0].logits.device)
    if policy.never_leaves_early(len(views)):
        return exits
    decided = torch.zeros(rows, dtype=torch.bool, device=exits.device)
    state = policy.start(rows, exits.device)
    for view in views[:-1]:
        leaving = policy.leaves(view, state) & ~decided
        exits[leaving] = view.index
        decided |= leaving
    return exits
