"""Shared fixtures: a tiny random BERT (weights, config, WordPiece vocabulary) built on disk, no hub."""

import argparse
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

_WORDS = (
    "the a an and or but not no is was are be it this that of to in on for with as at by from "
    "good bad great terrible movie film plot acting story fun boring love hate best worst very "
    "really so too just quite funny sad news world sports business science tech game team win "
    "lose market stock price company new old man woman dog cat sat mat people said year "
    "government president war election player season coach score , . ! ? ' - : ;"
).split()


def build_tiny_bert(directory: Path, num_layers: int = 4, seed: int = 0) -> Path:
    """Write a tiny random BERT (hidden 32, `num_layers` layers) and its tokenizer to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = ["##" + c for c in letters]
    vocab = specials + sorted(set(_WORDS)) + [c for c in letters if c not in _WORDS] + pieces
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True).save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Path of a tiny random 4-layer BERT with its tokenizer, built once per test session."""
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-bert")))


ROOT = FIXTURES.parent
TRAIN, TEST = FIXTURES / "e2e" / "sst.train", FIXTURES / "e2e" / "sst.test"


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


def train_tiny(work: Path, **extra) -> Path:
    """Train the MiniLM SST-2 config on the e2e fixtures with its backbone swapped for a tiny random
    BERT, which is then deleted: everything after training must work from the archive alone. `extra`:
    more overrides. Returns the serialization folder."""
    import json
    import shutil

    backbone = build_tiny_bert(work / "tiny-bert", num_layers=6)
    overrides = {
        "dataset_reader.transformer_model": str(backbone),
        "model.transformer_model": str(backbone),
        "train_data_path": str(TRAIN),
        "validation_data_path": str(TEST),
        "test_data_path": str(TEST),
        "trainer.num_epochs": 2,
        "trainer.optimizer.lr": 1e-3,
        "data_loader.batch_sampler.batch_size": 8,
        **extra,
    }
    run = work / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp("train", str(ROOT / "training_config" / "sst2_minilm.jsonnet"), "-s", str(run),
                 "--include-package", "sledge", "-o", json.dumps(overrides))
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


SENTENCES = [{"sentence": line.split(" ", 1)[1]} for line in TEST.read_text().splitlines()]


def predict_lines(archive, lines: list[dict], output: Path, *options: str) -> list[dict]:
    """`allennlp predict` (in this process) of JSON `lines`, written beside `output`; the output's rows."""
    import json

    source = output.with_suffix(".input.jsonl")
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    allennlp("predict", str(archive), str(source), "--include-package", "sledge", "--silent",
             "--output-file", str(output), *options)
    return [json.loads(line) for line in output.read_text().splitlines()]


def tiny_multi_exit(num_labels: int = 3, head: str = "linear", pooling: str = "mean",
                    regression: bool = False, lte: bool = False, layers: tuple[int, ...] = (0, 1, 3, 5)):
    """A tiny random 6-layer BERT with exits (eval mode), its heads scaled up so that exits disagree."""
    from sledge.nn import LayerwiseEncoder, MultiExitClassifier

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                        num_hidden_layers=6)
    options = {"type": head, **({"size": 16} if head == "attention" else {})}
    model = MultiExitClassifier(LayerwiseEncoder(config=config), list(layers),
                                1 if regression else num_labels, pooling=pooling, regression=regression,
                                learn_to_exit=lte, exit_head=options).eval()
    for exit_head in model.exits:
        exit_head.classifier.weight.data.mul_(8.0)
    if lte:
        model.lte.weight.data.mul_(6.0)
    model.temperatures.copy_(torch.tensor([1.0, 1.3, 0.8, 1.1][: len(layers)]))
    return model


def mixed_batch(size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded random rows of 3 to 19 tokens: (input_ids, attention_mask, token_type_ids)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 20, (size,), generator=generator)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, 100, mask.shape, generator=generator) * mask
    return ids, mask, torch.zeros_like(ids)


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
