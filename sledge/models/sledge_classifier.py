"""The AllenNLP Model `sledge`: a thin wrapper around `sledge.nn.MultiExitClassifier`."""

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional  # noqa: UP035 (AllenNLP reads typing's generics)

import torch
from allennlp.data import TextFieldTensors, Vocabulary
from allennlp.models import Model
from allennlp.training.metrics import CategoricalAccuracy
from transformers import AutoConfig, AutoTokenizer

from sledge.archival import describe
from sledge.dataset_readers.base import BACKBONE_DIR, backbone_path
from sledge.errors import SledgeError
from sledge.models.correlation import Correlation
from sledge.models.exit_policy import ExitPolicyRegistry
from sledge.nn import (
    BACKENDS,
    QUANTIZE,
    Cascade,
    ConfidencePolicy,
    ExitPolicy,
    LayerwiseEncoder,
    LearnedPolicy,
    MultiExitClassifier,
    PatiencePolicy,
    all_exits,
    check_threshold,
    difficulty_margin_loss,
    early_exit,
    lte_loss,
    quantize_int8,
    quantize_int8_rows,
    use_backend,
)
from sledge.training import JointStrategy, TrainingStrategy


def save_backbone(source: str, serialization_dir: str) -> None:
    """Copy the backbone's config and tokenizer (not its weights) to `serialization_dir/backbone`."""
    target = Path(serialization_dir) / BACKBONE_DIR
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    # A partial folder of its own for each caller: distributed workers all build the model at once.
    partial = Path(tempfile.mkdtemp(prefix=BACKBONE_DIR + ".partial-", dir=target.parent))
    AutoConfig.from_pretrained(source).save_pretrained(partial)
    AutoTokenizer.from_pretrained(source).save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:
        if not target.is_dir():  # not another worker's finished copy: a real failure
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)


@Model.register("sledge")
class SledgeClassifier(Model):
    """
    An early-exit transformer classifier or regressor (Schwartz et al. 2020): exits on several
    layers, trained together; at inference each instance leaves at the first exit its exit policy
    lets it leave: by default the first whose calibrated confidence reaches `confidence_threshold`.
    How the exits' losses are combined in training is the `training_strategy` (the paper's sum by
    default).

    In training mode every exit is computed. In evaluation mode the early-exit runner predicts
    (and is timed); with gold labels a full pass also gives every exit's own metrics and the loss.

    Metrics: for classification `accuracy` (of the predictions: the deepest exit's when training, the
    early-exit ones otherwise) and `accuracy_layer_k` for each exit layer k; for regression `pearson`,
    `spearman`, `pearson_layer_k` and `spearman_layer_k`; in evaluation also `average_exit_layer`,
    `exit_share_layer_k` and `seconds_per_instance` (wall-clock of the early-exit runner).

    Parameters
    ----------
    vocab : `Vocabulary`
        Holds the label namespace (classification).
    transformer_model : `str`
        HuggingFace name or directory of the backbone (`all-MiniLM-L6-v2` resolves offline).
    layer_indices : `list[int]`
        0-based transformer layers carrying an exit. `[k]` alone gives a single-exit baseline that
        runs layers 0..k only.
    dropout : `float`, optional (default = `0.1`)
        Dropout in each exit head.
    pooling : `str`, optional (default = `"cls"`)
        What each exit reads of a layer: `"cls"` (the paper) or `"mean"` (token mean, for backbones
        pretrained with mean pooling such as all-MiniLM-L6-v2).
    confidence_threshold : `float`, optional (default = `1.0`)
        In [0, 1]: 0 always takes the first exit, 1 always runs to the last (no early exit). Set at
        inference: `-o '{"model.confidence_threshold": 0.9}'`. It is the threshold of the default
        exit policy: `confidence` for classification, `learned` for regression with the LTE module.
    exit_policy : `ExitPolicyRegistry`, optional
        Another exit rule instead: `{"type": "confidence" | "entropy" | "patience" | "learned", ...}`,
        e.g. `-o '{"model.exit_policy": {"type": "patience", "patience": 2}}'`. A policy that cannot
        apply to the model (confidence or entropy on a regression model, learned without the LTE
        module) is an error when the model is loaded.
    regression : `bool`, optional (default = `False`)
        Each exit predicts one score (labels are floats), trained with the squared error.
    learn_to_exit : `bool`, optional (default = `False`)
        Train BERxiT's learning-to-exit module with the exits (its squared error to the target
        certainty is added to the loss), for the `learned` policy.
    exit_head : `dict`, optional (default = `{"type": "linear"}`)
        What each exit computes: `linear` (the paper's: a scalar mix of the pooled vectors, one linear
        layer), `mlp` (the same mix, then a hidden layer: option `inner`), `attention` (FastBERT's
        kind: one small self-attention layer over the exit layer's token states; options `size`,
        `heads`).
    difficulty_weight : `float`, optional (default = `0.0`)
        CascadeBERT's difficulty-aware regularisation (DAR): with training instances labelled easy or
        hard (`dataset_reader.difficulty_file`), this weight times, summed over the exits, the mean
        over the batch's (easy, hard) pairs of max(0, -g (c_i - c_j) + `difficulty_margin`), c being
        an exit's max-softmax confidence, is added to the loss. 0: off.
    difficulty_margin : `float`, optional (default = `0.5`)
        The margin ε of that loss (CascadeBERT: 0.5 for SST-2- and MRPC-sized tasks, 0.3 for larger).
    quantize : `str`, optional (default = `None`)
        int8 inference of every linear layer of the encoder and the heads (CPU), applied when the model
        is loaded from an archive; set at inference: `-o '{"model.quantize": "int8"}'`. `"int8"`: each
        token vector quantized with its own scale; `"int8-static"`: one scale per layer, fitted by
        `allennlp calibrate` (stored in the archive as `int8_scales.json`). Both are batch-invariant: a
        row's answer never depends on the other rows. `"int8-dynamic"`: PyTorch's dynamic quantization
        (one scale per batch, so answers depend on the batch; torch backend only), for comparison.
    backend : `str`, optional (default = `"torch"`)
        What runs the model at inference: `"torch"` or `"onnxruntime"` (the pieces exported to ONNX and
        run by ONNX Runtime on the CPU; `pip install 'sledge[onnx]'`). Set at inference:
        `-o '{"model.backend": "onnxruntime"}'`.
    backend_options : `dict`, optional
        The backend's options (onnxruntime: `optimization`, `io_binding`, `spinning`, `threads`,
        `cache_dir`; see `sledge.nn.OnnxRuntimeBackend`).
    training_strategy : `TrainingStrategy`, optional (default = `joint`)
        `{"type": "joint"}` (the sum of the exits' losses, the paper), `{"type": "weighted"}` (PABEE:
        deeper exits weigh more), `{"type": "alternating"}` (BERxiT: the last exit alone on every
        other step) or `{"type": "detached"}` (DeeBERT's split in one stage: the encoder learns from
        the last exit alone, the earlier heads from its features). Evaluation losses are always the
        plain sum.
    label_namespace : `str`, optional (default = `"labels"`)
        Vocabulary namespace of the labels.
    serialization_dir : `str`, optional
        Given by AllenNLP. When training, the backbone's config and tokenizer are saved to its
        `backbone/` folder (archived with `"include_in_archive": ["backbone"]`); when loading an
        archive that has one, the backbone is built from it, so no model download is needed.
    """

    default_predictor = "sledge"

    def __init__(
        self,
        vocab: Vocabulary,
        transformer_model: str,
        layer_indices: list[int],
        dropout: float = 0.1,
        pooling: str = "cls",
        confidence_threshold: float = 1.0,
        exit_policy: Optional[ExitPolicyRegistry] = None,  # noqa: UP045 (AllenNLP reads typing.Optional)
        regression: bool = False,
        learn_to_exit: bool = False,
        exit_head: Optional[dict[str, Any]] = None,  # noqa: UP045
        difficulty_weight: float = 0.0,
        difficulty_margin: float = 0.5,
        quantize: str | None = None,
        backend: str = "torch",
        backend_options: Optional[Dict[str, Any]] = None,  # noqa: UP006, UP045
        training_strategy: Optional[TrainingStrategy] = None,  # noqa: UP045
        label_namespace: str = "labels",
        serialization_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(vocab, serialization_dir=serialization_dir, **kwargs)
        path = backbone_path(transformer_model, serialization_dir)
        saved = serialization_dir is not None and path == str(Path(serialization_dir) / BACKBONE_DIR)
        encoder = LayerwiseEncoder(path, load_weights=not saved)  # saved: weights come from the archive
        if serialization_dir is not None and not saved:
            save_backbone(path, serialization_dir)
        num_labels = 1 if regression else vocab.get_vocab_size(label_namespace)
        core = MultiExitClassifier(
            encoder, layer_indices, num_labels, dropout, pooling, regression, learn_to_exit, exit_head
        )
        self._setup(core, confidence_threshold, exit_policy, training_strategy, label_namespace)
        if difficulty_weight < 0 or difficulty_margin < 0:
            raise SledgeError("model.difficulty_weight and model.difficulty_margin must be >= 0")
        if difficulty_weight and regression:
            raise SledgeError("model.difficulty_weight: it ranks class confidences; a regression has none")
        self.difficulty_weight, self.difficulty_margin = difficulty_weight, difficulty_margin
        self.quantize = check_quantize(quantize)
        self.backend, self.backend_options = check_backend(backend, backend_options)

    @classmethod
    def _load(cls, config, serialization_dir, weights_file=None, cuda_device: int = -1) -> "SledgeClassifier":
        """
        AllenNLP's loading (weights read safely, see `sledge.archival`), then `quantize` and `backend`.
        Weights whose shapes do not fit the model the config and vocabulary build are one `SledgeError` line.
        """
        try:
            model = super()._load(config, serialization_dir, weights_file, cuda_device)
        except RuntimeError as error:
            raise weights_mismatch(error, serialization_dir, weights_file) or error from None
        model.eval()
        prepare_inference(model.core, model.quantize, model.backend, model.backend_options, serialization_dir,
                          cuda_device)
        return model

    def _setup(
        self,
        core: "MultiExitClassifier | Cascade",
        confidence_threshold: float,
        exit_policy: ExitPolicy | None,
        training_strategy: TrainingStrategy | None,
        label_namespace: str,
    ) -> None:
        """What every sledge model keeps besides its core: policy, strategy, metrics."""
        self.core = core
        self.difficulty_weight, self.difficulty_margin, self.quantize = 0.0, 0.5, None
        self.backend, self.backend_options = "torch", {}
        self.exit_policy = default_policy(
            exit_policy, check_threshold(confidence_threshold, "model.confidence_threshold"), core
        )
        self.training_strategy = training_strategy or JointStrategy()
        self.label_namespace = label_namespace
        exits = len(core.layer_indices)
        metric = Correlation if core.regression else CategoricalAccuracy
        self._score = metric()
        self._exit_scores = [metric() for _ in range(exits)]
        self._exit_counts = torch.zeros(exits, dtype=torch.long)
        self._seconds = 0.0  # wall-clock of the early-exit runner since the last reset

    def forward(  # type: ignore[override]
        self,
        tokens: TextFieldTensors,
        label: torch.Tensor | None = None,
        metadata: list[dict[str, Any]] | None = None,
        difficulty: torch.Tensor | None = None,
        exit_setting: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """
        `exit_setting` (batch,): each instance's own setting of the exit policy (its threshold), as the
        Predictor gives it; without it every instance runs at the policy's own.
        """
        inputs = (tokens["input_ids"], tokens["attention_mask"], tokens.get("token_type_ids"))
        output: dict[str, torch.Tensor] = {}
        all_logits = certainties = None
        if self.training:
            gradient = self.training_strategy.early_exit_gradient
            all_logits, certainties = self.core.forward_all(*inputs, early_exit_gradient=gradient)
            logits = all_logits[-1]
        else:
            result, seconds = self._timed_early_exit(*inputs, row_settings=exit_setting)
            self._seconds += seconds
            logits, exit_index = result.logits, result.exit_index
            self._exit_counts += torch.bincount(exit_index.cpu(), minlength=len(self._exit_scores))
            layers = torch.tensor(self.core.layer_indices, device=exit_index.device)
            output.update(exit_index=exit_index, exit_layer=layers[exit_index])
            if result.probs is not None:
                output.update(probs=result.probs, confidence=result.probs.max(dim=-1)[0])
            if result.certainty is not None:
                output["certainty"] = result.certainty
            if label is not None:
                all_logits, certainties = all_exits(self.core, *inputs)
        output["logits"] = logits
        if self.core.regression:
            output["score"] = logits[:, 0]
        elif "probs" not in output:
            output["probs"] = torch.softmax(logits / self.core.temperatures[-1], dim=-1)
        if label is not None and all_logits is not None:
            loss = self.training_strategy.loss(all_logits, label, self.core.layer_indices, self.training)
            if certainties is not None:
                loss = loss + lte_loss(certainties, all_logits, label)
            if self.training and difficulty is not None and self.difficulty_weight:
                confidences = [torch.softmax(logits, dim=-1).max(dim=-1)[0] for logits in all_logits]
                margins = [difficulty_margin_loss(c, difficulty, self.difficulty_margin) for c in confidences]
                loss = loss + self.difficulty_weight * sum(margins)
            output["loss"] = loss
            self._score(self._predictions(logits), label)
            for metric, exit_logits in zip(self._exit_scores, all_logits):
                metric(self._predictions(exit_logits), label)
        return output

    def _predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """What a metric compares with the gold labels: the scores for regression, else the logits."""
        return logits[:, 0] if self.core.regression else logits

    def _timed_early_exit(self, *inputs: torch.Tensor, row_settings: torch.Tensor | None = None):
        cuda = inputs[0].is_cuda
        if cuda:
            torch.cuda.synchronize(inputs[0].device)
        start = time.perf_counter()
        result = early_exit(self.core, *inputs, policy=self.exit_policy, row_settings=row_settings)
        if cuda:
            torch.cuda.synchronize(inputs[0].device)
        return result, time.perf_counter() - start

    def make_output_human_readable(self, output_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        if self.core.regression:
            return output_dict
        predicted = output_dict["probs"].argmax(dim=-1).tolist()
        output_dict["label"] = [  # type: ignore[assignment]
            self.vocab.get_token_from_index(index, namespace=self.label_namespace) for index in predicted
        ]
        return output_dict

    def get_metrics(self, reset: bool = False) -> dict[str, float]:
        layers = self.core.layer_indices
        metrics: dict[str, float] = {}
        named = [("", self._score)] + [(f"_layer_{k}", m) for k, m in zip(layers, self._exit_scores)]
        for suffix, metric in named:
            value = metric.get_metric(reset)
            if isinstance(value, dict):
                metrics.update({f"{name}{suffix}": number for name, number in value.items()})
            else:
                metrics[f"accuracy{suffix}"] = value
        total = int(self._exit_counts.sum())
        if total:
            shares = self._exit_counts.double() / total
            metrics["average_exit_layer"] = float((shares * torch.tensor(layers).double()).sum())
            for layer, share in zip(layers, shares.tolist()):
                metrics[f"exit_share_layer_{layer}"] = share
            metrics["seconds_per_instance"] = self._seconds / total
        if reset:
            self._exit_counts.zero_()
            self._seconds = 0.0
        return metrics


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch.Size\(\[(.*?)\]\) from checkpoint, "
    r"the shape in current model is torch.Size\(\[(.*?)\]\)"
)


def weights_mismatch(
    error: RuntimeError, serialization_dir: str, weights_file: str | None
) -> SledgeError | None:
    """A one-line `SledgeError` for PyTorch's "size mismatch" error (else None), naming the archive."""
    found = _SIZE_MISMATCH.findall(str(error))
    if not found:
        return None
    name, saved, built = found[0]
    where = describe(weights_file or os.path.join(serialization_dir, "weights.th"))
    labels = Path(serialization_dir, "vocabulary", "labels.txt")
    vocabulary = (
        f" (vocabulary/labels.txt has {len(labels.read_text(encoding='utf-8').split())} labels)"
        if labels.is_file() and "classifier" in name
        else ""
    )
    more = f"; {len(found) - 1} more parameter(s) differ" if len(found) > 1 else ""
    return SledgeError(
        f"{where}: the weights do not fit the model that config.json and the vocabulary build: {name} has "
        f"shape [{saved}] in the weights, [{built}] in the model{vocabulary}{more}; the archive's "
        "vocabulary or config.json was changed after training"
    )


def check_quantize(quantize: str | None) -> str | None:
    if quantize is not None and quantize not in QUANTIZE:
        raise SledgeError(f"model.quantize must be null or one of {', '.join(QUANTIZE)}, got {quantize!r}")
    return quantize


def check_backend(backend: str, options: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    if backend not in BACKENDS:
        raise SledgeError(f"model.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if options is not None and not isinstance(options, dict):
        raise SledgeError(f"model.backend_options must be an object, got {options!r}")
    return backend, dict(options or {})


SCALES_FILE = "int8_scales.json"  # what `allennlp calibrate` writes for `quantize: "int8-static"`


def prepare_inference(
    core: "MultiExitClassifier | Cascade",
    quantize: str | None,
    backend: str,
    backend_options: dict[str, Any],
    serialization_dir: str | None,
    cuda_device: int = -1,
) -> None:
    """Quantize `core` as `quantize` asks (static scales: read from the archive), then put it on `backend`."""
    if quantize is not None and cuda_device >= 0:
        raise SledgeError(f"model.quantize: {quantize} runs on the CPU only; load with --cuda-device -1")
    if quantize == "int8-dynamic" and backend != "torch":
        raise SledgeError("model.quantize 'int8-dynamic' (PyTorch's dynamic quantization) runs on the torch "
                          "backend only; use 'int8' or 'int8-static' with model.backend " + repr(backend))
    if quantize == "int8":
        quantize_int8_rows(core)
    elif quantize == "int8-static":
        path = Path(serialization_dir or ".", SCALES_FILE)
        if not path.is_file():
            raise SledgeError(
                f"model.quantize 'int8-static' needs the activation scales that `allennlp calibrate` stores "
                f"in the archive ({SCALES_FILE}); this archive has none: calibrate it first"
            )
        try:
            quantize_int8_rows(core, json.loads(path.read_text(encoding="utf-8")))
        except ValueError as error:
            raise SledgeError(f"{SCALES_FILE}: {error}; calibrate the archive again") from None
    elif quantize == "int8-dynamic":
        quantize_int8(core)
    use_backend(core, backend, **backend_options)


def default_policy(
    exit_policy: ExitPolicy | None, confidence_threshold: float, core: "MultiExitClassifier | Cascade"
) -> ExitPolicy:
    """
    The policy a model runs: `exit_policy` if given (then `confidence_threshold` must be left at 1),
    else the threshold's policy: `confidence` for classification, `learned` for regression with the
    LTE module, none (no early exit) for regression without it. Checked against the model.
    """
    has_lte = core.lte is not None
    if exit_policy is not None:
        if confidence_threshold != 1.0:
            raise SledgeError(
                "give the threshold inside model.exit_policy, not also as model.confidence_threshold"
            )
        policy = exit_policy
    elif not core.regression:
        policy = ConfidencePolicy(confidence_threshold)
    elif has_lte:
        policy = LearnedPolicy(confidence_threshold)
    elif confidence_threshold < 1.0:
        raise SledgeError(
            "model.confidence_threshold: a regression model has no confidence; it exits early with "
            "model.exit_policy 'patience', or 'learned' when trained with learn_to_exit"
        )
    else:
        policy = PatiencePolicy(patience=len(core.layer_indices))  # never leaves early
    policy.check(core.regression, has_lte)
    return policy
