"""How the exits' losses train the model: the training strategies, and the optimizer `sledge_adamw`."""

from sledge.training.alternating import AlternatingStrategy
from sledge.training.detached import DetachedStrategy
from sledge.training.distilled import DistilledStrategy
from sledge.training.joint import JointStrategy
from sledge.training.optimizer import SledgeAdamW
from sledge.training.strategy import TrainingStrategy
from sledge.training.weighted import WeightedStrategy

__all__ = [
    "AlternatingStrategy",
    "DetachedStrategy",
    "DistilledStrategy",
    "JointStrategy",
    "SledgeAdamW",
    "TrainingStrategy",
    "WeightedStrategy",
]
