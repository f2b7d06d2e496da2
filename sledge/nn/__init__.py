"""The framework-free core of sledge: plain torch and transformers, no AllenNLP."""

from sledge.nn.calibration import (
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    oracle_exits,
)
from sledge.nn.cascade import Cascade
from sledge.nn.continuous import Finished, LayerBatcher
from sledge.nn.difficulty import difficulty_inversion_score
from sledge.nn.early_exit import (
    EarlyExitOutput,
    check_threshold,
    early_exit,
    exits_at_threshold,
    full_pass_views,
)
from sledge.nn.encoder import LayerwiseEncoder, resolve_backbone
from sledge.nn.exit_heads import EXIT_HEADS, AttentionExitHead, LinearExitHead, MlpExitHead
from sledge.nn.exit_policies import (
    POLICIES,
    ConfidencePolicy,
    EntropyPolicy,
    ExitPolicy,
    ExitView,
    LearnedPolicy,
    PatiencePolicy,
    simulate_exits,
)
from sledge.nn.model import (
    ExitHead,
    MultiExitClassifier,
    ScalarMix,
    difficulty_margin_loss,
    lte_loss,
    lte_targets,
)
from sledge.nn.quantize import QUANTIZE, quantize_int8

__all__ = [
    "EXIT_HEADS",
    "POLICIES",
    "QUANTIZE",
    "AttentionExitHead",
    "Cascade",
    "ConfidencePolicy",
    "EarlyExitOutput",
    "EntropyPolicy",
    "ExitHead",
    "ExitPolicy",
    "ExitView",
    "Finished",
    "LayerBatcher",
    "LayerwiseEncoder",
    "LearnedPolicy",
    "LinearExitHead",
    "MlpExitHead",
    "MultiExitClassifier",
    "PatiencePolicy",
    "ScalarMix",
    "check_threshold",
    "difficulty_inversion_score",
    "difficulty_margin_loss",
    "early_exit",
    "exits_at_threshold",
    "expected_calibration_error",
    "fit_temperature",
    "full_pass_views",
    "lte_loss",
    "lte_targets",
    "negative_log_likelihood",
    "oracle_exits",
    "quantize_int8",
    "resolve_backbone",
    "simulate_exits",
]
