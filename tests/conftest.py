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
