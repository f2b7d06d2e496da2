"""
Shared test fixtures. Nothing is downloaded: every backbone is a tiny random model written to disk.

Tiny models that let a test fail
--------------------------------
"Batched equals batch 1" or "the policy leaves at the first exit whose statistic reaches the setting"
proves nothing on a model whose rows all leave at the same exit, or whose every exit predicts one
label. The shared models are therefore built non-degenerate, and `tests/test_fixtures.py` checks that
they stay so:

- **`tiny_multi_exit(...)`**: a framework-free `sledge.nn.MultiExitClassifier` on a tiny random
  encoder of any family the layer-by-layer encoder runs (`config=tiny_config("bert" | "roberta" |
  "albert" | "distilbert" | "mpnet")`), exits (linear, mlp or attention heads; classification,
  regression, with or without the LTE module) set by `spread_exits`: on random rows every exit's
  calibrated confidences spread over (1 / labels, 1) with a median that rises with depth (for 3 labels
  about 0.6 at the first exit, 0.9 at the last, so every threshold of the sweep's grid `SWEEP_GRID`
  splits a batch), each class is the argmax of about as many rows as the others, consecutive exits
  agree on some rows and disagree on others, the LTE certainties spread over (0, 1) and regression
  scores vary. Run it on `mixed_batch(size, seed, config)`: right-padded random rows of 3 to 19
  tokens. For another backbone, precision or runtime (an MPNet config, int8, an ONNX export), build
  it with `tiny_multi_exit(config=...)` and convert that model, or call `spread_exits(model, config)`
  on a multi-exit model of your own.
- **`trained_run`** (session-scoped, read-only): the MiniLM SST-2 config trained through `allennlp
  train` (`train_tiny`) on `fixtures/e2e/sentiment.train`, sentences in the tiny backbone's vocabulary
  whose label is learnable (one opinion word) or hard for shallow exits (a negation, or two opinions
  joined by `but`). On `TEST` (`fixtures/e2e/sentiment.test`, 32 sentences) its exits predict both
  labels, their confidences spread and rise with depth, and the first exit disagrees with the last on
  some sentences. `single_exit_runs` are the 2- and 6-layer complete models trained the same way (the
  cascade's members). `train_tiny(work, config=..., family=..., **overrides)` trains any config so,
  on a tiny backbone of any family `build_tiny_backbone` writes (BERT or MPNet WordPiece).

A test that relies on a split should still assert it (at least two exits taken, rows compacted, both
cascade members answering), with fixed settings: the sweep's grid, the serving defaults, or a value
equal to an observed statistic (`observed`), never one placed in a gap between rows.
"""

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from transformers import (
    AlbertConfig,
    AutoModel,
    BertConfig,
    BertTokenizerFast,
    DistilBertConfig,
    MPNetConfig,
    MPNetTokenizerFast,
    PretrainedConfig,
    RobertaConfig,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ROOT = FIXTURES.parent
TRAIN, TEST = FIXTURES / "e2e" / "sentiment.train", FIXTURES / "e2e" / "sentiment.test"
SENTENCES = [{"sentence": line.split(" ", 1)[1]} for line in TEST.read_text().splitlines()]
GOLD = [line.split(" ", 1)[0] for line in TEST.read_text().splitlines()]
SWEEP_GRID = [0.0] + [round(0.55 + 0.05 * i, 2) for i in range(10)]  # `allennlp sweep`'s default thresholds

_WORDS = (
    "the a an and or but not no is was are be it this that of to in on for with as at by from all "
    "good bad great terrible movie film plot acting story fun boring love hate best worst very "
    "really so too just quite funny sad news world sports business science tech game team win "
    "lose market stock price company new old man woman dog cat sat mat people said year "
    "government president war election player season coach score , . ! ? ' - : ;"
).split()


# ---------------------------------------------------------------------------------------------------
# Tiny backbones: configs in memory, and models with their tokenizers on disk


def tiny_config(family: str = "bert", num_layers: int = 6, vocab_size: int = 100,
    **changes) -> PretrainedConfig:
    """A tiny config (hidden 32, 2 attention heads) of a backbone family the layer-by-layer encoder runs."""
    common = dict(vocab_size=vocab_size, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                  num_hidden_layers=num_layers)
    if family == "bert":
        return BertConfig(**common, **changes)
    if family == "roberta":
        return RobertaConfig(**common, pad_token_id=1, **changes)
    if family == "albert":
        return AlbertConfig(**common, embedding_size=16, num_hidden_groups=2, **changes)
    if family == "distilbert":
        return DistilBertConfig(vocab_size=vocab_size, dim=32, n_heads=2, hidden_dim=64, n_layers=num_layers,
                                **changes)
    if family == "mpnet":
        return MPNetConfig(**{"max_position_embeddings": 64, **common, **changes})
    raise ValueError(f"no tiny config for {family!r}")


def pad_id_of(config: PretrainedConfig | None) -> int:
    """The padding id of `config`'s family (MPNet and RoBERTa count positions from it)."""
    return int(getattr(config, "pad_token_id", 0) or 0) if config is not None else 0


_SPECIALS = {"bert": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
             "mpnet": ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]}


def build_tiny_backbone(directory: Path, family: str = "bert", num_layers: int = 6, seed: int = 0) -> Path:
    """
    Write a tiny random backbone of `family` ("bert" or "mpnet": WordPiece tokenizers) and its
    tokenizer to `directory`: a vocabulary of about 100 whole words (those of the fixtures' sentences
    among them) plus single letters, so out-of-vocabulary words are spelled letter by letter.
    """
    directory.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = ["##" + c for c in letters]
    vocab = _SPECIALS[family] + sorted(set(_WORDS)) + [c for c in letters if c not in _WORDS] + pieces
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    if family == "bert":
        tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
        config = tiny_config("bert", num_layers, len(vocab), max_position_embeddings=128)
    else:
        tokenizer = MPNetTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True,
                                       unk_token="[UNK]")
        config = tiny_config("mpnet", num_layers, len(vocab), max_position_embeddings=130, pad_token_id=1)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(seed)
    AutoModel.from_config(config).save_pretrained(directory)
    return directory


def build_tiny_bert(directory: Path, num_layers: int = 4, seed: int = 0) -> Path:
    """`build_tiny_backbone` of a BERT with `num_layers` layers."""
    return build_tiny_backbone(directory, "bert", num_layers, seed)


@pytest.fixture
def temp_dir(tmp_path, monkeypatch) -> Path:
    """A private temporary folder for this test: what extraction leaves behind can be seen in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Path of a tiny random 4-layer BERT with its tokenizer, built once per test session."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


# ---------------------------------------------------------------------------------------------------
# Tiny multi-exit models whose exits disagree and whose confidences spread (framework-free)


def mixed_batch(size: int = 32, seed: int = 0, config: PretrainedConfig | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded random rows of 3 to 19 tokens for a model of `config` (default: `tiny_config()`):
    (input_ids, attention_mask, token_type_ids)."""
    vocab_size = 100 if config is None else config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 20, (size,), generator=generator)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, vocab_size, mask.shape,
        generator=generator) * mask + pad_id_of(config) * (1 - mask)
    return ids, mask, torch.zeros_like(ids)


def _scale_for_median(logits: torch.Tensor, target: float) -> float:
    """The factor s > 0 for which the median over rows of max softmax(s * logits) is `target`."""
    low, high = 1e-3, 1e4
    for _ in range(80):  # bisection on a log scale: the median confidence grows with s
        middle = (low * high) ** 0.5
        median = float(torch.softmax(middle * logits, dim=-1).max(dim=-1)[0].median())
        low, high = (middle, high) if median < target else (low, middle)
    return (low * high) ** 0.5


@torch.no_grad()
def spread_exits(model, config: PretrainedConfig | None = None, medians: list[float] | None = None,
                 shared: float = 0.5) -> None:
    """
    Set the exits of a random multi-exit `model` (its final linear layers, and the LTE module) so that
    on 256 random rows (`mixed_batch(256, 2020, config)`):

    - classification: exit j's calibrated confidence (max softmax(logits / T_j)) has median
      `medians[j]` (default: from 40% to 85% of the way from 1 / labels to 1, first to last exit), and
      each class is the argmax of about as many rows as the others (the logits are centred on the rows);
    - consecutive exits agree on some rows: each head's weights are pulled a `shared` part of the way
      towards the last head's where their shapes match (the linear head reads the same residual
      stream at every layer; an attention head's own projection makes its exits independent);
    - regression: every exit's scores have mean 0 and standard deviation 1 on those rows;
    - the LTE module: certainties have median 0.5 and spread over (0, 1) (logit standard deviation 1.5).
    """
    ids, mask, types = mixed_batch(256, 2020, config)
    last = model.exits[-1].classifier.weight.clone()
    for head in model.exits[:-1]:
        weight = head.classifier.weight
        if weight.shape == last.shape:
            weight.mul_(1 - shared).add_(shared * last)
    logits, certainties = model.forward_all(ids, mask, types)
    count = len(model.exits)
    for j, (head, values) in enumerate(zip(model.exits, logits)):
        classifier = head.classifier
        if model.regression:
            mean, std = values.mean(), values.std()
            classifier.weight.div_(std)
            classifier.bias.sub_(mean).div_(std)
            continue
        centre = values.mean(dim=0)
        chance = 1.0 / model.num_labels
        share = 0.4 + 0.45 * (j / (count - 1) if count > 1 else 0.5)
        target = medians[j] if medians is not None else chance + (1.0 - chance) * share
        scale = _scale_for_median((values - centre) / model.temperatures[j], target)
        classifier.weight.mul_(scale)
        classifier.bias.sub_(centre).mul_(scale)
    if model.lte is not None:
        pre = torch.logit(torch.stack(certainties).clamp(1e-6, 1 - 1e-6))
        scale = 1.5 / float(pre.std())
        model.lte.weight.mul_(scale)
        model.lte.bias.sub_(pre.median()).mul_(scale)


TEMPERATURES = [1.0, 1.3, 0.8, 1.1]  # the tiny models' calibration temperatures, cycled over the exits


def tiny_multi_exit(num_labels: int = 3, head: str = "linear", pooling: str = "mean",
    regression: bool = False,
                    lte: bool = False, layers: tuple[int, ...] = (0, 1, 3, 5),
                    config: PretrainedConfig | None = None, seed: int = 0, medians: list[float] | None = None,
                    temperatures: list[float] | None = None):
    """
    A tiny random multi-exit model (eval mode) on a random encoder of `config` (default: a 6-layer
    `tiny_config()`), calibration `temperatures` (default: `TEMPERATURES`, cycled), its exits set by
    `spread_exits` (see the module's docstring). `head`: linear, mlp or attention (16 wide).
    """
    from sledge.nn import LayerwiseEncoder, MultiExitClassifier

    config = config or tiny_config()
    torch.manual_seed(seed)
    options = {"type": head, **({"size": 16} if head == "attention" else {})}
    model = MultiExitClassifier(LayerwiseEncoder(config=config), list(layers),
                                1 if regression else num_labels, pooling=pooling, regression=regression,
                                learn_to_exit=lte, exit_head=options).eval()
    temperatures = temperatures or [TEMPERATURES[j % len(TEMPERATURES)] for j in range(len(layers))]
    model.temperatures.copy_(torch.tensor(temperatures))
    spread_exits(model, config, medians)
    return model


def statistic(policy, logits: torch.Tensor, temperatures: torch.Tensor,
              certainties: torch.Tensor | None = None) -> torch.Tensor | None:
    """
    What a threshold policy compares with its setting at each exit, (exits, rows), computed here from
    the README (not with sledge's policies): confidence, the max of softmax(logits / T) (of the logits
    alone when uncalibrated); entropy, -sum p log p / log(labels) of that distribution; learned, the
    LTE certainty. None for patience, which has no threshold.
    """
    if policy.name == "learned":
        return certainties
    if policy.name == "patience":
        return None
    scaled = logits / temperatures[:, None, None] if policy.calibrated else logits
    probs = torch.softmax(scaled, dim=-1)
    if policy.name == "confidence":
        return probs.max(dim=-1)[0]
    return -(probs * torch.log(probs)).sum(dim=-1) / math.log(probs.size(-1))


def rule_exits(policy, logits: torch.Tensor, temperatures: torch.Tensor,
               certainties: torch.Tensor | None = None, regression: bool = False) -> list[int]:
    """
    The exit each row takes under `policy`, by the README's rules written out here (not sledge's code):
    the first exit before the last where the row may leave, else the last. Confidence and learned:
    statistic >= threshold (never at threshold 1); entropy: statistic <= threshold; patience: the exit
    is the `patience`-th in a row to agree with the one before (same argmax; scores within
    `tolerance` for regression). `logits`: (exits, rows, labels), from one full pass.
    """
    values = statistic(policy, logits, temperatures, certainties)
    exits = []
    for row in range(logits.size(1)):
        chosen, agreements = logits.size(0) - 1, 0
        for j in range(logits.size(0) - 1):
            if policy.name == "patience":
                if j > 0:
                    now, before = logits[j, row], logits[j - 1, row]
                    agree = (abs(float(now[0] - before[0])) <= policy.tolerance if regression
                             else int(now.argmax()) == int(before.argmax()))
                    agreements = agreements + 1 if agree else 0
                leave = agreements >= policy.patience
            elif policy.name == "entropy":
                leave = float(values[j, row]) <= policy.threshold
            else:
                leave = policy.threshold < 1.0 and float(values[j, row]) >= policy.threshold
            if leave:
                chosen = j
                break
        exits.append(chosen)
    return exits


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature), in float64 numpy."""
    import numpy as np

    scaled = logits.double().numpy() / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels.numpy()].mean())


def independent_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises `nll`, found by scipy's bounded scalar search on log T (not by
    sledge's LBFGS)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=(-5.0, 5.0),
                            method="bounded", options={"xatol": 1e-7})
    return math.exp(found.x)


@torch.no_grad()
def alone(model, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None):
    """Each row run alone (batch 1, its padding cut) through every exit: the logits, (exits, rows,
    labels), and the LTE certainties, (exits, rows), or None."""
    logits, certainties = [], []
    for row in range(len(ids)):
        n = int(mask[row].sum())
        one_logits, one_certainties = model.forward_all(
            ids[row : row + 1, :n], mask[row : row + 1, :n],
                None if types is None else types[row : row + 1, :n])
        logits.append(torch.stack(one_logits)[:, 0])
        if one_certainties is not None:
            certainties.append(torch.stack(one_certainties)[:, 0])
    return torch.stack(logits, dim=1), (torch.stack(certainties, dim=1) if certainties else None)


@torch.no_grad()
def assert_as_alone(batched, model, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor | None = None,
                    **options) -> None:
    """`batched` (`early_exit`'s output on these rows) is what each row gives run alone (batch 1, its
    padding cut) with the same `options`: the same exit, and the same logits, probabilities and LTE
    certainty wherever the output has them."""
    from sledge.nn import early_exit

    for row in range(len(ids)):
        n = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :n], mask[row : row + 1, :n],
                         None if types is None else types[row : row + 1, :n], **options)
        assert int(one.exit_index) == int(batched.exit_index[row]), f"row {row}"
        for field in ("logits", "probs", "certainty"):
            if getattr(batched, field) is not None:
                torch.testing.assert_close(getattr(one, field)[0], getattr(batched, field)[row], atol=1e-5,
                                           rtol=1e-4)


def observed(values: torch.Tensor, shares=(0.25, 0.5, 0.75),
    among: torch.Tensor | None = None) -> list[float]:
    """
    Settings equal to observed statistics: the values at these shares of the sorted `values` (each the
    statistic of some row, which then sits exactly on the boundary). `among` (bool, per value) limits
    the choice to some rows: those whose statistic is the same to the last bit batched and alone. A
    float32 matrix product's last bits depend on how many rows it multiplies (a row's confidence moves
    by about 1e-7 between batch 1 and batch 32, padding or not), so a setting equal to another row's
    statistic could leave that row on either side of it; at these, batch 1 and batched must agree.
    """
    values = values.flatten() if among is None else values.flatten()[among.flatten()]
    ordered = values.sort()[0]
    return [float(ordered[min(int(share * len(ordered)), len(ordered) - 1)]) for share in shares]


# ---------------------------------------------------------------------------------------------------
# Through AllenNLP: a tiny trained model that is not constant


def allennlp(*args: str) -> None:
    """Run `allennlp ARGS` in this process (run from ROOT, whose .allennlp_plugins names sledge)."""
    import sys

    from allennlp.commands import main as allennlp_main

    argv = sys.argv
    sys.argv = ["allennlp", *args]
    try:
        allennlp_main(prog="allennlp")
    finally:
        sys.argv = argv


# How the tiny backbone is trained: 8 epochs of 24 batches of 4 at 3e-3 without warm-up. On seeds 0-2 of
# the backbone that learns the opinion words (the training sentences' accuracy above 0.8) and leaves the
# first exit's confidences on TEST spread from about 0.5 to 0.95; 72 or 96 steps (batches of 8) left
# some seeds predicting one label at an exit, and the configs' 50 warm-up steps are most of the run.
TINY_TRAINING = {
    "trainer.num_epochs": 8,
    "trainer.optimizer.lr": 3e-3,
    "trainer.learning_rate_scheduler.warmup_steps": 0,
    "data_loader.batch_sampler.batch_size": 4,
}


def train_tiny(work: Path, config: str = "sst2_minilm", family: str = "bert", num_layers: int = 6,
               **extra) -> Path:
    """
    Train `training_config/{config}.jsonnet` on the sentiment fixtures (`TRAIN`, validated and tested on
    `TEST`) with its backbone swapped for a tiny random one of `family` (`build_tiny_backbone`), which
    is then deleted: everything after training must work from the archive alone. Attention exit heads
    are made 16 wide, as small as the backbone. `extra`: more overrides (dotted keys). Returns the
    serialization folder.
    """
    from allennlp.common import Params

    backbone = build_tiny_backbone(work / f"tiny-{family}", family, num_layers)
    path = ROOT / "training_config" / f"{config}.jsonnet"
    overrides = {
        "dataset_reader.transformer_model": str(backbone),
        "model.transformer_model": str(backbone),
        "train_data_path": str(TRAIN),
        "validation_data_path": str(TEST),
        "test_data_path": str(TEST),
        **TINY_TRAINING,
    }
    head = Params.from_file(str(path)).as_dict()["model"].get("exit_head", {})
    if head.get("type") == "attention":
        overrides["model.exit_head.size"] = 16
    overrides.update(extra)
    run = work / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp("train", str(path), "-s", str(run), "--include-package", "sledge", "-o",
            json.dumps(overrides))
    shutil.rmtree(backbone)
    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> dict:
    """The tiny SST-2 model with exits 0, 1, 3, 5 (see `train_tiny`). Read-only for tests."""
    work = tmp_path_factory.mktemp("e2e")
    run = train_tiny(work)
    return {"work": work, "run": run, "archive": run / "model.tar.gz"}


@pytest.fixture(scope="session")
def single_exit_runs(tmp_path_factory) -> dict[int, Path]:
    """Two complete tiny models, of 2 and 6 layers (single exits on layers 1 and 5): archives."""
    return {layer: train_tiny(tmp_path_factory.mktemp(f"single-{layer}"), **{"model.layer_indices": [layer]})
            / "model.tar.gz" for layer in (1, 5)}


def archive_pass(archive_file, data: Path = TEST) -> dict:
    """
    One full pass of an archive's model over `data` (one batch): `logits` (exits, N, labels),
    `certainties` (exits, N) or None, gold `labels` (indices, or scores), `temperatures`, `names` (the
    labels in the order of the model's vocabulary, that of `probs`) and `lengths` (tokens per instance).
    """
    from sledge.commands.common import full_pass, load_sledge_archive, read_labelled, tensor_batches

    archive = load_sledge_archive(str(archive_file))
    instances = read_labelled(archive, str(data))
    logits, certainties, labels = full_pass(archive.model, tensor_batches(instances, archive, 64,
        torch.device("cpu")))
    core = archive.model.core
    names = [] if core.regression else [archive.model.vocab.get_token_from_index(i, "labels")
                                        for i in range(core.num_labels)]
    return {"logits": logits, "certainties": certainties, "labels": labels,
        "temperatures": core.temperatures.clone(),
            "names": names, "lengths": [len(instance["tokens"]) for instance in instances],
            "layers": list(core.layer_indices)}


def predict_lines(archive, lines: list[dict], output: Path, *options: str) -> list[dict]:
    """`allennlp predict` (in this process) of JSON `lines`, written beside `output`; the output's rows."""
    source = output.with_suffix(".input.jsonl")
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    allennlp("predict", str(archive), str(source), "--include-package", "sledge", "--silent",
             "--output-file", str(output), *options)
    return [json.loads(line) for line in output.read_text().splitlines()]


def serve_args(archive, **changes) -> argparse.Namespace:
    """`allennlp serve`'s parsed options for `archive` with its defaults (small queue and batches), as
    `sledge.commands.serve.load` takes them."""
    options = {
        "archive_file": str(archive), "confidence_threshold": None, "max_accuracy_drop": None,
        "latency_budget_ms": None, "sweep_json": None, "dev_file": None, "online_agreement_target": None,
        "online_share": 0.05, "batch_size": 4, "max_wait_ms": 1.0, "queue_size": 8, "deadline_ms": 100.0,
        "max_skips": 1, "scheduler": None,
    }
    return argparse.Namespace(**{**options, **changes})
