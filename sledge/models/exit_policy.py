"""The AllenNLP registry of exit policies: `"exit_policy": {"type": "entropy", "threshold": 0.3}`."""

from allennlp.common import Registrable

from sledge.nn.exit_policies import POLICIES
from sledge.serving.budget import BudgetPolicy


class ExitPolicyRegistry(Registrable):
    """
    Builds the `sledge.nn` exit policy named by `type` with the remaining keys as its parameters:
    `confidence` (threshold, calibrated), `entropy` (threshold, calibrated), `patience` (patience,
    tolerance), `learned` (threshold). A new policy is a subclass of `sledge.nn.ExitPolicy`,
    registered with `@ExitPolicyRegistry.register("name")`.
    """

    default_implementation = "confidence"


for _name, _policy in POLICIES.items():
    ExitPolicyRegistry.register(_name)(_policy)
ExitPolicyRegistry.register("budget")(BudgetPolicy)  # a target, resolved from a sweep.json
