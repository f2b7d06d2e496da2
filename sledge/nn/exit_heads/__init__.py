"""Exit heads: what an exit computes from the encoder's states. One class each, behind `ExitHead`."""

from typing import Any

from sledge.errors import SledgeError
from sledge.nn.exit_heads.attention import AttentionExitHead
from sledge.nn.exit_heads.base import ExitHead, ScalarMix
from sledge.nn.exit_heads.linear import LinearExitHead
from sledge.nn.exit_heads.mlp import MlpExitHead

EXIT_HEADS: dict[str, type[ExitHead]] = {
    head.name: head for head in (LinearExitHead, MlpExitHead, AttentionExitHead)
}


def build_head(
    spec: dict[str, Any] | None, layer: int, hidden_size: int, num_labels: int, dropout: float
) -> ExitHead:
    """The head `spec` names (`{"type": "linear" | "mlp" | "attention", ...options}`; None: linear)."""
    options = dict(spec or {})
    name = options.pop("type", "linear")
    if name not in EXIT_HEADS:
        raise SledgeError(f"exit_head: unknown type {name!r}; choose from {', '.join(EXIT_HEADS)}")
    try:
        return EXIT_HEADS[name](layer, hidden_size, num_labels, dropout, **options)
    except TypeError as error:
        raise SledgeError(f"exit_head {spec}: {error}") from None


__all__ = [
    "EXIT_HEADS",
    "AttentionExitHead",
    "ExitHead",
    "LinearExitHead",
    "MlpExitHead",
    "ScalarMix",
    "build_head",
]
