"""How the exits' losses train the model: strategies (joint, weighted, alternating, detached), optimizer."""

from sledge.training.alternating import AlternatingStrategy
from sledge.training.detached import DetachedStrategy
from sledge.training.joint import JointStrategy
from sledge.training.optimizer import SledgeAdamW
from sledge.training.strategy import TrainingStrategy
from sledge.training.weighted import WeightedStrategy

__all__ = [
    "AlternatingStrategy",
    "DetachedStrategy",
    "JointStrategy",
    "SledgeAdamW",
    "TrainingStrategy",
    "WeightedStrategy",
]
