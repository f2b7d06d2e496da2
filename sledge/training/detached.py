"""DeeBERT's division of labour in one stage: the encoder learns from the last exit only."""

from sledge.training.joint import JointStrategy
from sledge.training.strategy import TrainingStrategy


@TrainingStrategy.register("detached")
class DetachedStrategy(JointStrategy):
    """
    Xin et al. (2020, DeeBERT) fine-tune the encoder and last exit first, then freeze them and train
    the earlier exits. This strategy does both in the same steps, at no extra cost: the loss is the
    sum of every exit's cross-entropy, but the gradient the earlier exits send into the encoder is
    scaled by `backbone_gradient` (0 by default: cut). So the encoder trains as in the standard
    model, and the earlier heads learn to read its lower layers as they are being fine-tuned.

    Parameters
    ----------
    backbone_gradient : `float`, optional (default = `0.0`)
        In [0, 1]: the share of the earlier exits' gradient that reaches the encoder; 1 is `joint`.
    """

    def __init__(self, backbone_gradient: float = 0.0) -> None:
        if not 0.0 <= backbone_gradient <= 1.0:
            raise ValueError(
                f"training_strategy.backbone_gradient must lie in [0, 1], got {backbone_gradient}"
            )
        self.early_exit_gradient = backbone_gradient
