"""Shared fixtures: a tiny random BERT (weights, config, WordPiece vocabulary) built on disk, no hub."""

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
