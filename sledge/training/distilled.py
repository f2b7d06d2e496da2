"""Self-distillation (FastBERT): the earlier exits learn from the last exit's softened predictions."""

import torch
import torch.nn.functional as F

from sledge.nn import MultiExitClassifier
from sledge.training.detached import DetachedStrategy
from sledge.training.strategy import TrainingStrategy


@TrainingStrategy.register("distilled")
class DistilledStrategy(DetachedStrategy):
    """
    Liu et al. (2020, FastBERT) in one stage: the last exit learns from the gold labels; every earlier
    exit i learns from the last exit's predictions, softened by `temperature`, mixed with the gold:

        L_i = gold_weight * CE(z_i, y)
              + (1 - gold_weight) * T^2 * KL(softmax(z_last / T) || softmax(z_i / T))

    (for regression: gold_weight * MSE(z_i, y) + (1 - gold_weight) * MSE(z_i, z_last)). The teacher
    `z_last` is detached: no gradient of the earlier exits' losses reaches the last exit through it. As
    in `detached`, the encoder learns from the last exit alone (`backbone_gradient` 0), so the
    teacher is the standard model being fine-tuned, and no second stage is needed. The loss is the
    sum of the exits' losses; evaluation losses are the plain sum of the exits' gold losses.

    Parameters
    ----------
    temperature : `float`, optional (default = `2.0`)
        Softening of both distributions (T > 0); the KL term is scaled by T^2 (Hinton et al. 2015).
    gold_weight : `float`, optional (default = `0.5`)
        In [0, 1]: the share of the gold-label loss in each earlier exit's loss (0: FastBERT's, the
        teacher alone).
    backbone_gradient : `float`, optional (default = `0.0`)
        As `detached`'s: the share of the earlier exits' gradient that reaches the encoder.
    """

    def __init__(
        self, temperature: float = 2.0, gold_weight: float = 0.5, backbone_gradient: float = 0.0
    ) -> None:
        super().__init__(backbone_gradient)
        if not temperature > 0:
            raise ValueError(f"training_strategy.temperature must be > 0, got {temperature}")
        if not 0.0 <= gold_weight <= 1.0:
            raise ValueError(f"training_strategy.gold_weight must lie in [0, 1], got {gold_weight}")
        self.temperature = temperature
        self.gold_weight = gold_weight

    def loss(
        self, all_logits: list[torch.Tensor], labels: torch.Tensor, layers: list[int], training: bool
    ) -> torch.Tensor:
        if not training:
            return MultiExitClassifier.loss(all_logits, labels)
        teacher = all_logits[-1].detach()
        total = MultiExitClassifier.exit_loss(all_logits[-1], labels)
        for student in all_logits[:-1]:
            gold = MultiExitClassifier.exit_loss(student, labels)
            soft = self.distillation(student, teacher)
            total = total + self.gold_weight * gold + (1 - self.gold_weight) * soft
        return total

    def distillation(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """The student's loss against the teacher: T^2 * KL(teacher || student), or MSE for scores."""
        if student.size(-1) == 1:  # a regression score
            return F.mse_loss(student, teacher)
        t = self.temperature
        return t * t * F.kl_div(
            F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True,
            reduction="batchmean",
        )
