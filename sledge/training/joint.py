"""The paper's strategy: the sum of all exits' losses."""

import torch

from sledge.nn import MultiExitClassifier
from sledge.training.strategy import TrainingStrategy


@TrainingStrategy.register("joint")
class JointStrategy(TrainingStrategy):
    """Schwartz et al. (2020): every step minimises the sum of every exit's cross-entropy."""

    def loss(
        self, all_logits: list[torch.Tensor], labels: torch.Tensor, layers: list[int], training: bool
    ) -> torch.Tensor:
        return MultiExitClassifier.loss(all_logits, labels)
