"""AllenNLP predictors of sledge."""

from sledge.predictors.sledge_predictor import SledgePredictor

__all__ = ["SledgePredictor"]
