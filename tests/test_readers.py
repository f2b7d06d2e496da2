"""The dataset readers on tiny copies of each published format (fixtures/data), and on broken ones."""

import csv
import json
from pathlib import Path

import pytest
from allennlp.common import Params
from allennlp.data import DatasetReader, Instance
from allennlp.data.dataset_readers.dataset_reader import WorkerInfo
from transformers import AutoTokenizer

import sledge.dataset_readers
from sledge.dataset_readers import MalformedInputError
from sledge.errors import SledgeError

DATA = Path(__file__).resolve().parent.parent / "fixtures" / "data"

READERS = {
    "sst_sentence": sledge.dataset_readers.SstSentenceReader,
    "glue_sst2": sledge.dataset_readers.GlueSst2Reader,
    "ag_news": sledge.dataset_readers.AgNewsReader,
    "imdb": sledge.dataset_readers.ImdbReader,
    "snli": sledge.dataset_readers.SnliReader,
    "mnli": sledge.dataset_readers.MnliReader,
    "rte": sledge.dataset_readers.RteReader,
    "sledgehammer_tsv": sledge.dataset_readers.SledgehammerTsvReader,
    "jsonl": sledge.dataset_readers.JsonlReader,
    "stsb": sledge.dataset_readers.StsbReader,
    "sick": sledge.dataset_readers.SickReader,
}


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return AutoTokenizer.from_pretrained(tiny_bert)


@pytest.fixture(scope="module")
def make(tiny_bert):
    def make_reader(name: str, **params) -> DatasetReader:
        return DatasetReader.from_params(Params({"type": name, "transformer_model": tiny_bert, **params}))

    return make_reader


def read(reader: DatasetReader, path: Path) -> list[Instance]:
    return list(reader.read(str(path)))


def non_blank_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def texts(instance: Instance) -> tuple[str, str | None]:
    metadata = instance["metadata"].metadata
    return metadata["text"], metadata["text_pair"]


def label(instance: Instance) -> str | None:
    return instance["label"].label if "label" in instance.fields else None


def check_tokens(instance: Instance, tokenizer, text: str, text_pair: str | None = None) -> None:
    """The instance's token ids are those of `text` (and `text_pair`), and a pair has both segments."""
    expected = tokenizer(text, text_pair, truncation=True, max_length=128)
    assert instance["tokens"].input_ids.tolist() == expected["input_ids"]
    segments = set(instance["tokens"].token_type_ids.tolist())
    assert segments == ({0, 1} if text_pair is not None else {0})


# ----------------------------------------------------------------------------------------------------------
# Registration


@pytest.mark.parametrize("name", sorted(READERS))
def test_from_params_builds_each_registered_reader(name, tiny_bert):
    reader = DatasetReader.from_params(Params({"type": name, "transformer_model": tiny_bert}))
    assert type(reader) is READERS[name]
    assert isinstance(reader, sledge.dataset_readers.SledgeReader)
    assert reader.max_length == 128


def test_package_exports_every_reader():
    assert set(READERS.values()) | {sledge.dataset_readers.SledgeReader, MalformedInputError} == {
        getattr(sledge.dataset_readers, name) for name in sledge.dataset_readers.__all__
    }


# ----------------------------------------------------------------------------------------------------------
# Each format


def test_stsb_reads_pairs_and_float_scores_and_ignores_license_fields(make, tokenizer):
    path = DATA / "stsb" / "sts-train.csv"
    instances = read(make("stsb"), path)
    rows = [line.split("\t") for line in non_blank_lines(path)]
    assert len(instances) == len(rows) == 5 and len(rows[-1]) == 9  # the last line has license fields
    assert texts(instances[0]) == ("A plane is taking off.", "An air plane is taking off.")
    assert [float(i["label"].tensor) for i in instances] == pytest.approx([float(r[4]) for r in rows])
    assert instances[0]["label"].tensor.dtype.is_floating_point
    assert texts(instances[-1]) == (rows[-1][5], rows[-1][6])
    check_tokens(instances[0], tokenizer, "A plane is taking off.", "An air plane is taking off.")


def test_stsb_malformed_score_names_file_and_line(make):
    path = DATA / "stsb" / "sts-train.malformed.csv"
    with pytest.raises(MalformedInputError, match=rf"^{path}, line 3: the score 'five' is not a number$"):
        read(make("stsb"), path)


@pytest.mark.parametrize("target", ["relatedness", "entailment"])
def test_sick_serves_the_relatedness_score_or_the_entailment_label(make, target):
    path = DATA / "sick" / "SICK_trial.txt"
    instances = read(make("sick", target=target), path)
    assert len(instances) == 4
    assert texts(instances[1]) == ("A dog is running on the grass", "A dog is running on the grass outside")
    if target == "relatedness":
        assert [float(i["label"].tensor) for i in instances] == pytest.approx([4.5, 4.9, 3.6, 1.1])
    else:
        assert [label(i) for i in instances] == ["NEUTRAL", "ENTAILMENT", "CONTRADICTION", "NEUTRAL"]


def test_sick_malformed_files_name_file_and_line(make, tmp_path):
    path = DATA / "sick" / "SICK_train.malformed.txt"
    with pytest.raises(MalformedInputError, match=rf"^{path}, line 3: entailment_judgment 'MAYBE' is not"):
        read(make("sick", target="entailment"), path)
    out_of_range = tmp_path / "SICK_test_annotated.txt"
    out_of_range.write_text("pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\n"
                            "7\tA b\tC d\t5.5\tNEUTRAL\n")
    with pytest.raises(MalformedInputError, match=r"line 2: the score 5.5 is outside \[1, 5\]"):
        read(make("sick"), out_of_range)
    headless = tmp_path / "headless.txt"
    headless.write_text("pair_ID\tsentence_A\tsentence_B\n1\ta\tb\n")
    with pytest.raises(MalformedInputError, match="line 1: the header lacks the column.s. relatedness_score"):
        read(make("sick"), headless)
    with pytest.raises(SledgeError, match="dataset_reader.target must be one of relatedness, entailment"):
        make("sick", target="score")


def test_sst_sentence(make, tokenizer):
    path = DATA / "sst2" / "stsa.binary.dev"
    instances = read(make("sst_sentence"), path)
    lines = non_blank_lines(path)
    assert len(instances) == len(lines)
    assert [label(i) for i in instances] == [line.split(" ", 1)[0] for line in lines]
    assert texts(instances[0]) == ("one long string of cliches .", None)
    assert label(instances[0]) == "0"
    check_tokens(instances[0], tokenizer, "one long string of cliches .")
    ids = instances[0]["tokens"].input_ids.tolist()
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "onelongstringofcliches."


def test_glue_sst2_labelled(make, tokenizer):
    path = DATA / "sst2" / "glue_SST-2" / "train.tsv"
    instances = read(make("glue_sst2"), path)
    lines = non_blank_lines(path)
    assert lines[0] == "sentence\tlabel"
    assert len(instances) == len(lines) - 1
    assert texts(instances[0]) == ("hide new secretions from the parental units ", None)
    assert [label(i) for i in instances] == [line.rsplit("\t", 1)[1] for line in lines[1:]]
    check_tokens(instances[0], tokenizer, "hide new secretions from the parental units ")


def test_glue_sst2_unlabelled_test_file(make):
    path = DATA / "sst2" / "glue_SST-2" / "test.tsv"
    instances = read(make("glue_sst2"), path)
    lines = non_blank_lines(path)
    assert lines[0] == "index\tsentence"
    assert len(instances) == len(lines) - 1
    assert texts(instances[0]) == ("uneasy mishmash of styles and genres .", None)
    assert all("label" not in i.fields for i in instances)


def test_ag_news(make, tokenizer):
    path = DATA / "ag_news" / "test.csv"
    instances = read(make("ag_news"), path)
    with open(path, newline="", encoding="utf-8") as data:
        rows = list(csv.reader(data))
    assert len(instances) == len(rows) == len(non_blank_lines(path))
    names = (DATA / "ag_news" / "classes.txt").read_text().split("\n")
    assert [label(i) for i in instances] == [names[int(row[0]) - 1] for row in rows]
    assert label(instances[0]) == "Business"
    first = (
        "Fears for T N pension after talks Unions representing workers at Turner   Newall say they are "
        "'disappointed' after talks with stricken parent firm Federal Mogul."
    )
    assert texts(instances[0]) == (first, None)
    check_tokens(instances[0], tokenizer, first)
    # `\$` is unescaped, in titles and descriptions alike; other backslashes stay.
    mills = next(i for i in instances if texts(i)[0].startswith("Mills Grabs"))
    assert texts(mills)[0].startswith("Mills Grabs $1B Portfolio;")
    assert "for just over $1 billion" in texts(mills)[0]
    space = next(i for i in instances if "SPACE.com" in texts(i)[0])
    assert "A second\\team of rocketeers" in texts(space)[0]
    assert all("\\$" not in texts(i)[0] for i in instances)


def test_imdb(make, tokenizer):
    split = DATA / "aclImdb" / "train"
    instances = read(make("imdb"), split)
    files = {label: sorted((split / label).glob("*.txt")) for label in ("neg", "pos")}
    assert len(instances) == len(files["neg"]) + len(files["pos"]) == 5
    assert [label(i) for i in instances] == ["neg"] * len(files["neg"]) + ["pos"] * len(files["pos"])
    expected = [f.read_text().replace("<br />", " ").strip() for f in files["neg"] + files["pos"]]
    assert [texts(i)[0] for i in instances] == expected
    assert texts(instances[0])[0].startswith("The trailer promised a tense thriller.")
    assert "rooms.  The twist" in texts(instances[0])[0]
    assert all("<br" not in texts(i)[0] for i in instances)
    # sorted by file name: 0_9 < 10_8 < 1_7
    assert texts(instances[3])[0].startswith("Saw this at a festival")
    check_tokens(instances[0], tokenizer, expected[0])


def test_snli_skips_pairs_without_gold_label(make, tokenizer):
    path = DATA / "snli" / "snli_1.0_dev.jsonl"
    instances = read(make("snli"), path)
    records = [json.loads(line) for line in non_blank_lines(path)]
    assert sum(r["gold_label"] == "-" for r in records) == 1
    kept = [r for r in records if r["gold_label"] != "-"]
    assert len(instances) == len(kept) == len(records) - 1
    assert [label(i) for i in instances] == [r["gold_label"] for r in kept]
    assert "-" not in {label(i) for i in instances}
    premise = "A person on a horse jumps over a broken down airplane."
    hypothesis = "A person is training his horse for a competition."
    assert texts(instances[0]) == (premise, hypothesis)
    assert label(instances[0]) == "neutral"
    check_tokens(instances[0], tokenizer, premise, hypothesis)
    assert all(set(i["tokens"].token_type_ids.tolist()) == {0, 1} for i in instances)


def test_mnli_jsonl(make, tokenizer):
    path = DATA / "mnli" / "multinli_1.0_dev_matched.jsonl"
    instances = read(make("mnli"), path)
    records = [json.loads(line) for line in non_blank_lines(path)]
    kept = [r for r in records if r["gold_label"] != "-"]
    assert len(kept) < len(records)
    assert len(instances) == len(kept)
    assert [label(i) for i in instances] == [r["gold_label"] for r in kept]
    first = ("The new rights are nice enough", "Everyone really likes the newest benefits ")
    assert texts(instances[0]) == first
    assert label(instances[0]) == "neutral"
    check_tokens(instances[0], tokenizer, *first)


def test_mnli_glue_tsv(make, tokenizer):
    path = DATA / "mnli" / "glue_MNLI" / "dev_matched.tsv"
    instances = read(make("mnli"), path)
    lines = non_blank_lines(path)
    assert len(instances) == len(lines) - 1
    assert [label(i) for i in instances] == [line.split("\t")[-1] for line in lines[1:]]
    first = ("The new rights are nice enough", "Everyone really likes the newest benefits ")
    assert texts(instances[0]) == first
    check_tokens(instances[0], tokenizer, *first)
    # The same pairs as the jsonl file, less the one without a gold label.
    from_jsonl = read(make("mnli"), DATA / "mnli" / "multinli_1.0_dev_matched.jsonl")
    assert [(texts(i), label(i)) for i in instances] == [(texts(i), label(i)) for i in from_jsonl]


def test_mnli_glue_test_tsv_is_unlabelled(make):
    path = DATA / "mnli" / "glue_MNLI" / "test_matched.tsv"
    instances = read(make("mnli"), path)
    assert len(instances) == len(non_blank_lines(path)) - 1
    assert texts(instances[0]) == (
        "The new rights are nice enough",
        "Everyone really likes the newest benefits ",
    )
    assert all("label" not in i.fields for i in instances)


def test_mnli_tsv_with_a_label_column(make):
    path = DATA / "mnli" / "label_column.tsv"
    instances = read(make("mnli"), path)
    lines = non_blank_lines(path)
    assert len(instances) == len(lines) - 1
    assert [label(i) for i in instances] == [line.split("\t")[3] for line in lines[1:]]


def test_mnli_format_detected_by_first_character(make, tmp_path):
    source = DATA / "mnli"
    (tmp_path / "dev.txt").write_bytes((source / "multinli_1.0_dev_matched.jsonl").read_bytes())
    (tmp_path / "dev2.txt").write_bytes((source / "glue_MNLI" / "dev_matched.tsv").read_bytes())
    reader = make("mnli")
    assert [texts(i) for i in read(reader, tmp_path / "dev.txt")] == [
        texts(i) for i in read(reader, tmp_path / "dev2.txt")
    ]


def test_rte(make, tokenizer):
    path = DATA / "rte" / "train.jsonl"
    instances = read(make("rte"), path)
    records = [json.loads(line) for line in non_blank_lines(path)]
    assert len(instances) == len(records)
    assert [label(i) for i in instances] == [r["label"] for r in records]
    premise = "No Weapons of Mass Destruction Found in Iraq Yet."
    hypothesis = "Weapons of Mass Destruction Found in Iraq."
    assert texts(instances[0]) == (premise, hypothesis)
    assert label(instances[0]) == "not_entailment"
    check_tokens(instances[0], tokenizer, premise, hypothesis)


def test_rte_unlabelled_test_file(make):
    path = DATA / "rte" / "test.jsonl"
    instances = read(make("rte"), path)
    assert len(instances) == len(non_blank_lines(path))
    assert all("label" not in i.fields for i in instances)
    assert texts(instances[0]) == (
        "Mangla was summoned after Madhumita's sister Nidhi Shukla, who was the first witness in the case.",
        "Shukla is related to Mangla.",
    )
    assert set(instances[0]["tokens"].token_type_ids.tolist()) == {0, 1}


def test_sledgehammer_tsv_single_texts(make, tokenizer):
    path = DATA / "sledgehammer" / "sst_dev.tsv"
    instances = read(make("sledgehammer_tsv"), path)
    lines = non_blank_lines(path)
    assert len(instances) == len(lines)
    assert [label(i) for i in instances] == [line.split("\t")[0] for line in lines]
    assert texts(instances[0]) == ("one long string of cliches .", None)
    assert label(instances[0]) == "0"
    check_tokens(instances[0], tokenizer, "one long string of cliches .")


def test_sledgehammer_tsv_pairs(make, tokenizer):
    path = DATA / "sledgehammer" / "snli_dev.tsv"
    instances = read(make("sledgehammer_tsv"), path)
    lines = non_blank_lines(path)
    assert len(instances) == len(lines)
    assert [label(i) for i in instances] == [line.split("\t")[0] for line in lines]
    premise = "A person on a horse jumps over a broken down airplane."
    hypothesis = "A person is training his horse for a competition."
    assert texts(instances[0]) == (premise, hypothesis)
    assert label(instances[0]) == "0"
    check_tokens(instances[0], tokenizer, premise, hypothesis)


def test_jsonl_single_texts(make, tokenizer):
    path = DATA / "jsonl" / "sentences.jsonl"
    instances = read(make("jsonl"), path)
    records = [json.loads(line) for line in non_blank_lines(path)]
    assert len(instances) == len(records)
    assert [label(i) for i in instances] == [r.get("label") for r in records]
    assert "label" not in instances[-1].fields
    assert texts(instances[0]) == ("a very well-made , funny and entertaining picture .", None)
    assert label(instances[0]) == "pos"
    check_tokens(instances[0], tokenizer, "a very well-made , funny and entertaining picture .")


def test_jsonl_pairs_and_numeric_labels(make, tokenizer):
    path = DATA / "jsonl" / "pairs.jsonl"
    reader = make("jsonl", text_field="premise", text_pair_field="hypothesis", label_field="label")
    assert reader.text_pair_field == "hypothesis"
    instances = read(reader, path)
    records = [json.loads(line) for line in non_blank_lines(path)]
    assert len(instances) == len(records)
    assert [label(i) for i in instances] == [str(r["label"]) for r in records]
    assert texts(instances[0]) == ("The cat sat on the mat.", "A cat is sitting.")
    check_tokens(instances[0], tokenizer, "The cat sat on the mat.", "A cat is sitting.")


def test_jsonl_without_labels(make):
    instances = read(make("jsonl", label_field=None), DATA / "jsonl" / "sentences.jsonl")
    assert instances and all("label" not in i.fields for i in instances)


# ----------------------------------------------------------------------------------------------------------
# Malformed input: the error names the file and the line


MALFORMED = [
    # (reader, params, fixture, the file named in the error (if not the fixture), line)
    ("sst_sentence", {}, "sst2/stsa.binary.malformed.dev", None, 4),
    ("glue_sst2", {}, "sst2/glue_SST-2/train.malformed.tsv", None, 4),
    ("ag_news", {}, "ag_news/test.malformed.csv", None, 4),
    ("imdb", {}, "aclImdb.malformed/train", "aclImdb.malformed/train/pos/1_8.txt", 1),
    ("snli", {}, "snli/snli_1.0_dev.malformed.jsonl", None, 3),
    ("mnli", {}, "mnli/multinli_1.0_dev_matched.malformed.jsonl", None, 2),
    ("mnli", {}, "mnli/glue_MNLI/dev_matched.malformed.tsv", None, 3),
    ("rte", {}, "rte/train.malformed.jsonl", None, 3),
    ("sledgehammer_tsv", {}, "sledgehammer/snli_dev.malformed.tsv", None, 4),
    ("jsonl", {}, "jsonl/sentences.malformed.jsonl", None, 3),
]


@pytest.mark.parametrize(
    ("name", "params", "fixture", "named", "line"), MALFORMED, ids=[m[2] for m in MALFORMED]
)
def test_malformed_fixture_raises_with_file_and_line(make, name, params, fixture, named, line):
    with pytest.raises(MalformedInputError) as caught:
        read(make(name, **params), DATA / fixture)
    message = str(caught.value)
    assert str(DATA / (named or fixture)) in message
    assert f", line {line}: " in message


def malformed_cases() -> list[tuple[str, dict, str, str, int, str]]:
    """(reader, params, file name, content, line, words of the problem) for each kind of broken line."""
    snli_ok = json.dumps({"sentence1": "a dog .", "sentence2": "an animal .", "gold_label": "entailment"})
    return [
        ("sst_sentence", {}, "sst", "1 good .\n0bad\n", 2, "no space"),
        ("sst_sentence", {}, "sst", "1 good .\n\npos great fun .\n", 3, "not an integer"),
        ("sst_sentence", {}, "sst", "1 good .\n0 \n", 2, "empty sentence"),
        ("glue_sst2", {}, "train.tsv", "text\tlabel\ngood .\t1\n", 1, "sentence"),
        ("glue_sst2", {}, "train.tsv", "sentence\tlabel\ngood .\t1\nbad .\t0\textra\n", 3, "3 tab-separated"),
        ("glue_sst2", {}, "train.tsv", "sentence\tlabel\ngood .\t\n", 2, "empty label"),
        ("ag_news", {}, "test.csv", '"1","a","b"\n"2","only two"\n', 2, "2 field(s)"),
        ("ag_news", {}, "test.csv", '"1","a","b"\n"0","a","b"\n', 2, "not one of 1..4"),
        ("snli", {}, "s.jsonl", snli_ok + '\n{"sentence1": "a", "sentence2": "b"}\n', 2, "gold_label"),
        ("snli", {}, "s.jsonl", snli_ok + "\n[1, 2]\n", 2, "JSON object"),
        ("mnli", {}, "m.tsv", "index\tsentence1\tgold_label\n0\ta\tneutral\n", 1, "sentence2"),
        ("mnli", {}, "m.tsv", "sentence1\tsentence2\tgold_label\na\tb\tneutral\nc\td\t\n", 3, "empty label"),
        ("rte", {}, "r.jsonl", '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n', 1, "label"),
        ("sledgehammer_tsv", {}, "t.tsv", "1\tgood .\n0\tbad .\textra\tfield\n", 2, "4 tab-separated"),
        ("sledgehammer_tsv", {}, "t.tsv", "1\tgood .\n\t bad .\n", 2, "empty label"),
        (
            "jsonl",
            {"text_pair_field": "h"},
            "p.jsonl",
            '{"sentence": "a", "h": "b"}\n{"sentence": "c"}\n',
            2,
            "'h'",
        ),
        ("jsonl", {}, "p.jsonl", '{"sentence": "a"}\n{"sentence": "c", "label": [1]}\n', 2, "label"),
        ("jsonl", {}, "p.jsonl", '{"sentence": "a"}\n{"sentence": 3}\n', 2, "string"),
    ]


@pytest.mark.parametrize(("name", "params", "file_name", "content", "line", "problem"), malformed_cases())
def test_each_kind_of_malformed_line(make, tmp_path, name, params, file_name, content, line, problem):
    path = tmp_path / file_name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(MalformedInputError) as caught:
        read(make(name, **params), path)
    assert f"{path}, line {line}: " in str(caught.value)
    assert problem in str(caught.value)


@pytest.mark.parametrize("name", ["sst_sentence", "glue_sst2", "snli", "sledgehammer_tsv", "jsonl"])
def test_text_that_is_not_utf8_is_malformed(make, tmp_path, name):
    first = {
        "sst_sentence": "1 fine .",
        "glue_sst2": "sentence\tlabel",
        "snli": json.dumps({"sentence1": "a", "sentence2": "b", "gold_label": "neutral"}),
        "sledgehammer_tsv": "1\tfine .",
        "jsonl": json.dumps({"sentence": "fine ."}),
    }[name]
    path = tmp_path / "latin1.txt"
    path.write_bytes(first.encode() + b"\n\n" + "0 caf\u00e9\tcaf\u00e9".encode("latin-1") + b"\n")
    with pytest.raises(MalformedInputError, match=r"line 3: not UTF-8"):
        read(make(name), path)


def test_imdb_folder_without_pos_or_neg(make):
    with pytest.raises(SledgeError, match="neither a 'pos' nor a 'neg'"):
        read(make("imdb"), DATA / "aclImdb")


# ----------------------------------------------------------------------------------------------------------
# Reading details shared by all readers


def test_blank_lines_are_skipped(make, tmp_path):
    path = tmp_path / "sst.txt"
    path.write_text("\n1 good fun .\n\n   \n0 bad film .\n\n", encoding="utf-8")
    instances = read(make("sst_sentence"), path)
    assert [(texts(i)[0], label(i)) for i in instances] == [("good fun .", "1"), ("bad film .", "0")]


def test_crlf_line_endings(make, tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\r\ngood fun .\t1\r\nbad film .\t0\r\n")
    instances = read(make("glue_sst2"), path)
    assert [(texts(i)[0], label(i)) for i in instances] == [("good fun .", "1"), ("bad film .", "0")]


def test_max_instances_counts_instances_not_lines(make):
    # The third line of the SNLI fixture has no gold label; max_instances=3 still gives 3 instances.
    instances = read(make("snli", max_instances=3), DATA / "snli" / "snli_1.0_dev.jsonl")
    assert [label(i) for i in instances] == ["neutral", "contradiction", "entailment"]


@pytest.mark.parametrize(
    ("name", "fixture"),
    [
        ("snli", "snli/snli_1.0_dev.jsonl"),
        ("imdb", "aclImdb/train"),
        ("mnli", "mnli/glue_MNLI/dev_matched.tsv"),
    ],
)
def test_workers_share_the_instances_between_them(make, name, fixture):
    path = DATA / fixture
    everything = [texts(i) for i in read(make(name), path)]
    shares = []
    for worker in range(2):
        reader = make(name)
        reader._set_worker_info(WorkerInfo(num_workers=2, id=worker))
        shares.append([texts(i) for i in read(reader, path)])
    assert shares[0] and shares[1]
    assert sorted(shares[0] + shares[1], key=str) == sorted(everything, key=str)
    assert shares[0] == everything[0::2] and shares[1] == everything[1::2]


def test_max_length_truncates(make):
    instances = read(make("imdb", max_length=16), DATA / "aclImdb" / "train")
    assert all(len(i["tokens"].input_ids) <= 16 for i in instances)
    assert any(len(i["tokens"].input_ids) == 16 for i in instances)
