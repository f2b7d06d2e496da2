"""The registrable base of training strategies."""

import torch
from allennlp.common import Registrable


class TrainingStrategy(Registrable):
    """
    Turns every exit's logits into the loss that one training step minimises.

    The Model calls `loss` once per batch, in training and in evaluation; `training` says which. A
    strategy that changes over training counts its own training steps (one `loss` call with
    `training=True` is one step). In evaluation every strategy returns the plain sum of the exits'
    losses (`MultiExitClassifier.loss`), so validation losses compare across strategies.
    """

    default_implementation = "joint"
    # How much of the gradient of the exits before the last reaches the encoder (1: all of it).
    early_exit_gradient = 1.0

    def loss(
        self, all_logits: list[torch.Tensor], labels: torch.Tensor, layers: list[int], training: bool
    ) -> torch.Tensor:
        """`all_logits[i]` are the logits of the exit on layer `layers[i]`."""
        raise NotImplementedError
