"""The framework-free core of sledge: plain torch and transformers, no AllenNLP."""

from sledge.nn.backends import BACKENDS, Backend, OnnxRuntimeBackend, TorchBackend, backend_of, use_backend
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
    all_exits,
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
from sledge.nn.quantize import QUANTIZE, Int8Linear, activation_ranges, quantize_int8, quantize_int8_rows

__all__ = [
    "BACKENDS",
    "EXIT_HEADS",
    "POLICIES",
    "QUANTIZE",
    "AttentionExitHead",
    "Backend",
    "Cascade",
    "ConfidencePolicy",
    "EarlyExitOutput",
    "EntropyPolicy",
    "ExitHead",
    "ExitPolicy",
    "ExitView",
    "Finished",
    "Int8Linear",
    "LayerBatcher",
    "LayerwiseEncoder",
    "LearnedPolicy",
    "LinearExitHead",
    "MlpExitHead",
    "MultiExitClassifier",
    "OnnxRuntimeBackend",
    "PatiencePolicy",
    "ScalarMix",
    "TorchBackend",
    "activation_ranges",
    "all_exits",
    "backend_of",
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
    "quantize_int8_rows",
    "resolve_backbone",
    "simulate_exits",
    "use_backend",
]
