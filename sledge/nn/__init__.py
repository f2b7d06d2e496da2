"""The framework-free core of sledge: plain torch and transformers, no AllenNLP."""

from sledge.nn.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    oracle_exits,
)
from sledge.nn.early_exit import EarlyExitOutput, check_threshold, early_exit, exits_at_threshold
from sledge.nn.encoder import LayerwiseEncoder, resolve_backbone
from sledge.nn.model import ExitHead, MultiExitClassifier, ScalarMix

__all__ = [
    "EarlyExitOutput",
    "ExitHead",
    "LayerwiseEncoder",
    "MultiExitClassifier",
    "ScalarMix",
    "check_threshold",
    "early_exit",
    "exits_at_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "negative_log_likelihood",
    "oracle_exits",
    "resolve_backbone",
]
