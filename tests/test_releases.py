"""
Every config reads its dataset's public release through `cached_path`, checked against a pinned sha256:
fixture archives in each release's exact layout are served from 127.0.0.1 at the real URLs' paths.
"""

import json
from pathlib import Path

import pytest
from allennlp.common import Params, file_utils
from allennlp.data import DatasetReader
from release_fixtures import loopback_data_path, pack, release_contents, release_server, sha256

import sledge  # noqa: F401  (registers the components)
from conftest import ROOT, allennlp, build_tiny_bert
from sledge.dataset_readers.releases import RECORDED, RELEASES, Release, local_data_path
from sledge.errors import SledgeError

CONFIGS = sorted((ROOT / "training_config").glob("*.jsonnet"))
DATA_KEYS = ("train_data_path", "validation_data_path", "test_data_path")
# What each dataset's fixture release holds, per data path: (instances, labels).
EXPECTED = {
    "agnews": {"!ag_news_csv/train.csv#train": 7, "!ag_news_csv/train.csv#dev": 1,
               "!ag_news_csv/test.csv": 8},
    "imdb": {"!aclImdb/train#train": 4, "!aclImdb/train#dev": 1, "!aclImdb/test": 5},
    "snli": {"!snli_1.0/snli_1.0_train.jsonl": 4, "!snli_1.0/snli_1.0_dev.jsonl": 4,
             "!snli_1.0/snli_1.0_test.jsonl": 4},
    "mnli": {"!multinli_1.0/multinli_1.0_train.jsonl": 4, "!multinli_1.0/multinli_1.0_dev_matched.jsonl": 4},
    "rte": {"!RTE/train.jsonl": 5, "!RTE/val.jsonl": 5},
    "stsb": {"!stsbenchmark/sts-train.csv": 48, "!stsbenchmark/sts-dev.csv": 24,
             "!stsbenchmark/sts-test.csv": 24},
    "sick": {"!SICK.txt#SemEval_set=TRAIN": 6, "!SICK.txt#SemEval_set=TRIAL": 3,
             "!SICK.txt#SemEval_set=TEST": 3},
}


@pytest.fixture(scope="module")
def server():
    with release_server() as running:
        yield running


@pytest.fixture
def releases(server, tmp_path, monkeypatch):
    """The loopback server, AllenNLP's cache in a temporary folder, and each fixture release's sha256
    pinned for its loopback URL (as the real ones are for theirs)."""
    monkeypatch.setattr(file_utils, "CACHE_DIRECTORY", str(tmp_path / "cache"))
    for url, (kind, members) in release_contents().items():
        real = RELEASES[url]
        data = pack(kind, members)
        pinned = Release(real.dataset, len(data), sha256(data), "fixture")
        monkeypatch.setitem(RELEASES, server.url(url), pinned)
    return server


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny-release"), num_layers=6))


def data_paths(config: Path) -> dict[str, str]:
    raw = Params.from_file(str(config)).as_dict()
    return {key: raw[key] for key in DATA_KEYS if key in raw}


def test_every_config_but_sst2s_names_a_pinned_public_release():
    named = set()
    for config in CONFIGS:
        for key, path in data_paths(config).items():
            if config.stem.startswith("sst2"):
                assert path.startswith("data/sst2/"), "the SST-2 demo keeps its shipped data"
                continue
            url = path.partition("!")[0]
            assert url in RELEASES, f"{config.name} {key}: {url} has no pinned sha256"
            named.add(url)
    # the one pinned release no config names is AG News' plain-csv mirror, documented as an -o
    assert set(RELEASES) - named == {url for url in RELEASES if "raw.githubusercontent.com" in url}
    for release in RELEASES.values():
        assert len(release.sha256) == 64 and int(release.sha256, 16) >= 0 and release.size > 0


RELEASE_CONFIGS = [config for config in CONFIGS if not config.stem.startswith("sst2")]


@pytest.mark.parametrize("config", RELEASE_CONFIGS, ids=lambda config: config.stem)
def test_each_config_reads_its_release_layout_through_cached_path(config, releases, tiny):
    params = Params.from_file(str(config), json.dumps({"dataset_reader.transformer_model": tiny}))
    reader = DatasetReader.from_params(params.pop("dataset_reader"))
    expected = EXPECTED[config.stem.split("_")[0]]
    for key, path in data_paths(config).items():
        local = loopback_data_path(releases, path)
        instances = list(reader.read(local))
        assert len(instances) == expected["!" + path.partition("!")[2]], (key, path)
        assert all("label" in instance.fields for instance in instances)
    assert any(request.startswith("GET ") for request in releases.requests)


def test_a_release_is_downloaded_once_and_extracted_once(releases, tiny):
    url = "http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz"
    releases.requests.clear()
    for member in ("sts-train.csv", "sts-dev.csv", "sts-test.csv", "sts-train.csv"):
        assert Path(local_data_path(f"{releases.url(url)}!stsbenchmark/{member}")).is_file()
    downloads = [request for request in releases.requests if request.startswith("GET")]
    assert downloads == ["GET /stswiki/images/4/48/Stsbenchmark.tar.gz"]


def test_a_changed_byte_is_a_checksum_error_naming_the_url_and_both_hashes(releases, tmp_path):
    url = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip"
    kind, members = release_contents()[url]
    good = pack(kind, members)
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x01
    loopback = releases.serve(url, bytes(bad))
    try:
        with pytest.raises(SledgeError) as error:
            local_data_path(loopback + "!RTE/train.jsonl", "RTE")
        message = str(error.value)
        assert "\n" not in message
        assert loopback in message and sha256(good) in message and sha256(bytes(bad)) in message
        cache = Path(file_utils.CACHE_DIRECTORY)
        assert not any(cache.glob("*-extracted")), "nothing of a bad download is extracted"
        assert [p for p in cache.iterdir() if p.name != RECORDED and not p.name.endswith(".lock")] == [], \
            "the bad download is deleted from the cache"
    finally:
        releases.serve(url, good)
    assert Path(local_data_path(loopback + "!RTE/train.jsonl", "RTE")).is_file(), "a rerun downloads afresh"


def test_an_interrupted_download_never_reaches_the_cache(releases):
    url = "https://zenodo.org/record/2787612/files/SICK.zip?download=1"
    path = "/record/2787612/files/SICK.zip"
    releases.cut.add(path)
    try:
        with pytest.raises(SledgeError, match="could not download .*SICK.zip"):
            local_data_path(releases.url(url) + "!SICK.txt", "SICK")
        cache = Path(file_utils.CACHE_DIRECTORY)
        assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == [], \
            "neither the partial download nor a temporary file is left"
    finally:
        releases.cut.discard(path)
    assert Path(local_data_path(releases.url(url) + "!SICK.txt", "SICK")).is_file()


def test_an_unpinned_url_is_recorded_on_first_download_and_checked_after(releases, capsys):
    url = releases.serve("https://example.org/mine/train.jsonl", b'{"premise": "a", "hypothesis": "b"}\n')
    first = local_data_path(url)
    assert "no published sha256" in capsys.readouterr().out
    recorded = json.loads((Path(file_utils.CACHE_DIRECTORY) / RECORDED).read_text())
    assert recorded == {url: sha256(Path(first).read_bytes())}
    assert local_data_path(url) == first  # the second use checks the recorded hash and passes
    Path(first).unlink()  # a fresh download (e.g. the host changed the file) must match the record
    releases.serve("https://example.org/mine/train.jsonl", b'{"premise": "c", "hypothesis": "d"}\n')
    with pytest.raises(SledgeError, match="recorded at its first download"):
        local_data_path(url)


def test_a_missing_local_path_names_the_dataset_and_where_to_get_it(tiny):
    reader = DatasetReader.from_params(Params({"type": "stsb", "transformer_model": tiny}))
    with pytest.raises(SledgeError) as error:
        list(reader.read("nowhere/sts-train.csv"))
    assert str(error.value).startswith("nowhere/sts-train.csv does not exist (STS-B)")
    assert "docs/datasets.md" in str(error.value)


def test_a_member_not_in_the_archive_is_one_line(releases):
    url = releases.url("https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip")
    with pytest.raises(SledgeError, match="no member 'RTE/dev.jsonl' in this archive"):
        local_data_path(url + "!RTE/dev.jsonl", "RTE")


# One short `allennlp train` per kind of release layout: a file in a tar.gz, a folder in a tar.gz, a file
# in a zip selected by a column of the format.
@pytest.mark.parametrize("config", ["stsb_minilm", "imdb_minilm", "sick_minilm"])
def test_allennlp_train_reads_each_kind_of_release(config, releases, tiny, tmp_path):
    path = ROOT / "training_config" / f"{config}.jsonnet"
    overrides = {
        "dataset_reader.transformer_model": tiny, "model.transformer_model": tiny,
        **{key: loopback_data_path(releases, value) for key, value in data_paths(path).items()},
        "trainer.num_epochs": 1, "data_loader.batch_sampler.batch_size": 8, "dataset_reader.max_length": 128,
    }
    run = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp("train", str(path), "-s", str(run), "--include-package", "sledge",
                 "-o", json.dumps(overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epoch"] == 0 and (run / "model.tar.gz").is_file()
    assert ("test_pearson" if config != "imdb_minilm" else "test_accuracy") in metrics


def test_sick_txt_is_read_by_its_semeval_set_column_for_both_targets(tiny):
    sick = str(ROOT / "fixtures" / "data" / "sick" / "SICK.txt")
    entailment = DatasetReader.from_params(Params({"type": "sick", "transformer_model": tiny,
                                                   "target": "entailment"}))
    trial = [instance["label"].label for instance in entailment.read(sick + "#SemEval_set=TRIAL")]
    assert trial == ["ENTAILMENT", "NEUTRAL", "CONTRADICTION"]  # SICK.txt names the column entailment_label
    relatedness = DatasetReader.from_params(Params({"type": "sick", "transformer_model": tiny}))
    scores = [float(instance["label"].tensor) for instance in relatedness.read(sick + "#SemEval_set=TEST")]
    assert scores == pytest.approx([4.9, 1.0, 3.5])
    assert len(list(relatedness.read(sick))) == 12  # no selector: the whole file
    with pytest.raises(SledgeError, match=r"unknown split 'Set=TRIAL'.*#SemEval_set=VALUE"):
        list(relatedness.read(sick + "#Set=TRIAL"))
