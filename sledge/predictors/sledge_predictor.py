"""The Predictor `sledge`: early-exit classification of JSON lines."""

from allennlp.common.util import JsonDict
from allennlp.data import Instance
from allennlp.predictors import Predictor

from sledge.errors import InvalidTextError, SledgeError, text_problem
from sledge.nn import check_threshold


@Predictor.register("sledge")
class SledgePredictor(Predictor):
    """
    Early-exit prediction for a `sledge` model. Input lines are JSON: `{"sentence": ...}` for one
    text, `{"premise": ..., "hypothesis": ...}` for a pair. Each output of a classifier carries
    `label`, `probs` (calibrated class probabilities, in the order of the model's label vocabulary),
    `exit_layer` (0-based transformer layer of the exit taken), `exit_index` (its position among the
    exits) and `confidence` (the calibrated max probability); a regression model's carries `score`,
    `exit_layer` and `exit_index`; a model with the learning-to-exit module adds `certainty` (its
    prediction at the exit taken). With `--batch-size N` the instances of a batch leave the running
    batch as they exit.

    The threshold is the model's `confidence_threshold`: set it with
    `-o '{"model.confidence_threshold": 0.9}'`, or per call with `set_threshold`; another exit policy
    with `-o '{"model.exit_policy": {"type": "entropy", "threshold": 0.3}}'`.

    Parameters
    ----------
    model : `Model`
        A `sledge` model.
    dataset_reader : `DatasetReader`
        A sledge reader (it tokenizes with the backbone's tokenizer).
    frozen : `bool`, optional (default = `True`)
        Put the model in evaluation mode.
    """

    def set_threshold(self, threshold: float) -> None:
        """Change the threshold of the model's exit policy (confidence, entropy or learned)."""
        policy = self._model.exit_policy  # type: ignore[attr-defined]
        if policy.setting != "threshold":
            raise SledgeError(
                f"exit_policy {policy.name!r} has no threshold; it is set by {policy.setting!r}"
            )
        self._model.exit_policy = policy.with_setting(check_threshold(threshold))  # type: ignore

    def check_json(self, json_dict: JsonDict) -> tuple[str, str | None]:
        """
        The text (and second text) of one input, or a `SledgeError` naming the key: the input must be
        a JSON object with a non-empty string `sentence` for a model of single texts, or non-empty
        strings `premise` and `hypothesis` for a model of text pairs (a reader that takes both, such
        as `sledgehammer_tsv`, accepts either), and a text holding a lone surrogate is an
        `InvalidTextError`. Other keys are ignored.
        """
        if not isinstance(json_dict, dict):
            raise SledgeError(f"expected a JSON object, found {type(json_dict).__name__}")
        pairs = getattr(self._dataset_reader, "text_pairs", None)
        single, pair = "sentence" in json_dict, "premise" in json_dict or "hypothesis" in json_dict
        if single and pair:
            raise SledgeError("give either 'sentence', or 'premise' and 'hypothesis', not both")
        if single:
            if pairs is True:
                raise SledgeError(
                    "key 'sentence': this model reads text pairs; give 'premise' and 'hypothesis'"
                )
            return _text(json_dict, "sentence"), None
        if pair:
            if pairs is False:
                present = [key for key in ("premise", "hypothesis") if key in json_dict]
                raise SledgeError(
                    f"key {present[0]!r}: this model reads single texts; give 'sentence' instead"
                )
            return _text(json_dict, "premise"), _text(json_dict, "hypothesis")
        raise SledgeError(
            "a sledge input needs the key 'sentence' (single texts) or 'premise' and 'hypothesis' "
            f"(pairs); got keys {sorted(json_dict)}"
        )

    def _json_to_instance(self, json_dict: JsonDict) -> Instance:
        text, text_pair = self.check_json(json_dict)
        return self._dataset_reader.text_to_instance(text, text_pair)  # type: ignore[call-arg]

    def predict_json(self, inputs: JsonDict) -> JsonDict:
        return self._keep_public(super().predict_json(inputs))

    def predict_batch_json(self, inputs: list[JsonDict]) -> list[JsonDict]:
        return [self._keep_public(output) for output in super().predict_batch_json(inputs)]

    @staticmethod
    def _keep_public(output: JsonDict) -> JsonDict:
        keys = ("label", "probs", "score", "exit_layer", "exit_index", "exit_model", "confidence",
                "certainty")
        return {key: output[key] for key in keys if key in output}


def _text(json_dict: JsonDict, key: str) -> str:
    """`json_dict[key]`, which must be a non-empty string that a tokenizer can take (`InvalidTextError`)."""
    if key not in json_dict:
        raise SledgeError(f"missing key {key!r}")
    value = json_dict[key]
    if not isinstance(value, str):
        found = "null" if value is None else type(value).__name__
        raise SledgeError(f"key {key!r} must be a string, found {found}")
    if not value.strip():
        raise SledgeError(f"key {key!r} is empty")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidTextError(f"key {key!r} {problem}")
    return value
