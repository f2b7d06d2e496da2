"""A weighted sum of the exits' losses, deeper exits weighing more (PABEE)."""

import torch

from sledge.nn import MultiExitClassifier
from sledge.training.strategy import TrainingStrategy


@TrainingStrategy.register("weighted")
class WeightedStrategy(TrainingStrategy):
    """
    Zhou et al. (2020, PABEE): the loss is `sum_i w_i * L_i / sum_i w_i`, with `w_i` the 1-based
    number of the exit's layer by default (an exit on layer 5 weighs 6, one on layer 0 weighs 1).

    Parameters
    ----------
    weights : `list[float]`, optional
        One positive weight per exit, in exit order, instead of the layer numbers.
    """

    def __init__(self, weights: list[float] | None = None) -> None:
        if weights is not None and (not weights or min(weights) <= 0):
            raise ValueError(f"training_strategy.weights must be positive, got {weights}")
        self.weights = weights

    def loss(
        self, all_logits: list[torch.Tensor], labels: torch.Tensor, layers: list[int], training: bool
    ) -> torch.Tensor:
        if not training:
            return MultiExitClassifier.loss(all_logits, labels)
        weights = [layer + 1.0 for layer in layers] if self.weights is None else self.weights
        if len(weights) != len(layers):
            raise ValueError(
                f"training_strategy.weights has {len(weights)} entries for {len(layers)} exits {layers}"
            )
        losses = torch.stack([MultiExitClassifier.exit_loss(logits, labels) for logits in all_logits])
        w = losses.new_tensor(weights)
        return (w * losses).sum() / w.sum()
