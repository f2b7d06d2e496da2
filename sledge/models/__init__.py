"""AllenNLP models of sledge."""

from sledge.models.exit_policy import ExitPolicyRegistry
from sledge.models.sledge_cascade import SledgeCascade
from sledge.models.sledge_classifier import SledgeClassifier

__all__ = ["ExitPolicyRegistry", "SledgeCascade", "SledgeClassifier"]
