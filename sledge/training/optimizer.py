"""AdamW with its own learning rate for the exits before the last."""

import re
from typing import Any, Optional

import torch
from allennlp.training.optimizers import HuggingfaceAdamWOptimizer, Optimizer

EXIT = re.compile(r"(?:^|\.)exits\.(\d+)\.")


@Optimizer.register("sledge_adamw")
class SledgeAdamW(HuggingfaceAdamWOptimizer):
    """
    HuggingFace's AdamW (as `huggingface_adamw`), where the heads of every exit but the last learn at
    `early_exit_lr`. Heads that read features they do not shape (the `detached` strategy) are linear
    probes trained from scratch and need a far larger rate than the encoder's. The last exit, and so
    a single-exit baseline, learns at `lr` like everything else.

    Parameters
    ----------
    early_exit_lr : `float`, optional
        The learning rate of the earlier exits' heads (scalar mix and classifier); `lr` when not given.
    Everything else as `huggingface_adamw`; `parameter_groups` given here come after the exits' group.
    """

    def __init__(
        self,
        model_parameters: list[tuple[str, torch.nn.Parameter]],
        parameter_groups: Optional[list[tuple[list[str], dict[str, Any]]]] = None,  # noqa: UP045
        early_exit_lr: Optional[float] = None,  # noqa: UP045 (AllenNLP reads typing.Optional)
        **kwargs: Any,
    ) -> None:
        groups = list(parameter_groups or [])
        exits = {int(match.group(1)) for name, _ in model_parameters if (match := EXIT.search(name))}
        early = sorted(exits)[:-1]
        if early_exit_lr is not None and early:
            pattern = rf"(?:^|\.)exits\.({'|'.join(map(str, early))})\."
            groups.insert(0, ([pattern], {"lr": early_exit_lr}))
        super().__init__(model_parameters, parameter_groups=groups or None, **kwargs)
