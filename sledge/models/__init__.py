"""AllenNLP models of sledge."""

from sledge.models.sledge_classifier import SledgeClassifier

__all__ = ["SledgeClassifier"]
