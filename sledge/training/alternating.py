"""BERxiT's alternating fine-tuning: the last exit alone, then all exits, step after step."""

import torch

from sledge.nn import MultiExitClassifier
from sledge.training.strategy import TrainingStrategy


@TrainingStrategy.register("alternating")
class AlternatingStrategy(TrainingStrategy):
    """
    Xin et al. (2021, BERxiT): odd-numbered steps (1st, 3rd, ...) minimise the last exit's loss only,
    so the deepest exit trains as the standard model would; even-numbered steps minimise the sum of
    all exits' losses. The step count starts at 0 when the strategy is built.
    """

    def __init__(self) -> None:
        self.steps = 0

    def loss(
        self, all_logits: list[torch.Tensor], labels: torch.Tensor, layers: list[int], training: bool
    ) -> torch.Tensor:
        if not training:
            return MultiExitClassifier.loss(all_logits, labels)
        self.steps += 1
        if self.steps % 2 == 1:
            return MultiExitClassifier.exit_loss(all_logits[-1], labels)
        return MultiExitClassifier.loss(all_logits, labels)
