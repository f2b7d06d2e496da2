"""Exit policies: who leaves at which exit. One class each, behind `ExitPolicy`."""

from sledge.nn.exit_policies.base import ExitPolicy, ExitView, simulate_exits
from sledge.nn.exit_policies.confidence import ConfidencePolicy
from sledge.nn.exit_policies.entropy import EntropyPolicy, normalised_entropy
from sledge.nn.exit_policies.learned import LearnedPolicy
from sledge.nn.exit_policies.patience import PatiencePolicy

POLICIES: dict[str, type[ExitPolicy]] = {
    policy.name: policy for policy in (ConfidencePolicy, EntropyPolicy, PatiencePolicy, LearnedPolicy)
}

__all__ = [
    "POLICIES",
    "ConfidencePolicy",
    "EntropyPolicy",
    "ExitPolicy",
    "ExitView",
    "LearnedPolicy",
    "PatiencePolicy",
    "normalised_entropy",
    "simulate_exits",
]
