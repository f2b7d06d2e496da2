"""The sledge dataset readers; importing this package registers them with `DatasetReader`."""

from sledge.dataset_readers.ag_news import AgNewsReader
from sledge.dataset_readers.base import MalformedInputError, SledgeReader
from sledge.dataset_readers.glue_sst2 import GlueSst2Reader
from sledge.dataset_readers.imdb import ImdbReader
from sledge.dataset_readers.jsonl import JsonlReader
from sledge.dataset_readers.mnli import MnliReader
from sledge.dataset_readers.rte import RteReader
from sledge.dataset_readers.sick import SickReader
from sledge.dataset_readers.sledgehammer_tsv import SledgehammerTsvReader
from sledge.dataset_readers.snli import SnliReader
from sledge.dataset_readers.sst_sentence import SstSentenceReader
from sledge.dataset_readers.stsb import StsbReader

__all__ = [
    "AgNewsReader",
    "GlueSst2Reader",
    "ImdbReader",
    "JsonlReader",
    "MalformedInputError",
    "MnliReader",
    "RteReader",
    "SledgeReader",
    "SickReader",
    "SledgehammerTsvReader",
    "SnliReader",
    "SstSentenceReader",
    "StsbReader",
]
