"""The HTTP server: endpoints, errors, back-pressure, failures, both schedulers against batch 1, budgets."""

import json
import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import ROOT, TEST, predict_lines, serve_args
from sledge.commands.common import load_sledge_archive
from sledge.errors import SledgeError
from sledge.nn import ConfidencePolicy, EntropyPolicy, LayerBatcher
from sledge.serving.app import create_app
from sledge.serving.budget import OnlineThreshold, choose, for_accuracy_drop, for_latency
from sledge.serving.continuous import ContinuousScheduler
from sledge.serving.dynamic import DynamicScheduler
from sledge.serving.engine import Engine
from sledge.serving.metrics import ServingMetrics

SENTENCES = [line.split(" ", 1)[1] for line in TEST.read_text().splitlines()]
SCHEDULERS = {"dynamic": DynamicScheduler, "continuous": ContinuousScheduler}


@pytest.fixture(scope="module")
def archive(trained_run):
    return load_sledge_archive(str(trained_run["archive"]))


def app_of(archive, scheduler="dynamic", batch_size=8, queue_size=64, wait=None, policy=None):
    """The app of the tiny model; `wait` (an Event) holds the model thread before every batch."""

    def load():
        engine = Engine(archive)
        if policy is not None:
            engine.policy = policy
        if wait is not None:
            run = engine.run

            def held(*args, **kwargs):
                wait.wait()
                return run(*args, **kwargs)

            engine.run = held
        metrics = ServingMetrics(engine.layers)
        chosen = SCHEDULERS[scheduler](engine, batch_size, 2.0, queue_size, metrics)
        chosen.start()
        return engine, chosen, metrics

    return create_app(load)


def ready(client: TestClient, timeout: float = 120) -> None:
    """Wait (up to a deadline, not a fixed time) until the model has loaded in its thread."""
    deadline = time.monotonic() + timeout
    while (health := client.get("/health")).status_code != 200:
        assert time.monotonic() < deadline, health.json()
        time.sleep(0.01)


def predictions(trained_run, tmp_path: Path, threshold: float) -> list[dict]:
    """Batch-1 `allennlp predict` of every test sentence at `threshold`: the reference answers."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        return predict_lines(
            trained_run["archive"],
            [{"sentence": s} for s in SENTENCES],
            tmp_path / f"out-{threshold}.jsonl",
            "-o",
            json.dumps({"model.confidence_threshold": threshold}),
        )


def test_health_is_ready_only_once_the_model_is_loaded(archive):
    gate = threading.Event()

    def slow_load():
        gate.wait()
        engine = Engine(archive)
        metrics = ServingMetrics(engine.layers)
        scheduler = DynamicScheduler(engine, 8, 2.0, 8, metrics)
        scheduler.start()
        return engine, scheduler, metrics

    with TestClient(create_app(slow_load)) as client:
        loading = client.get("/health")
        assert loading.status_code == 503 and loading.json() == {"status": "loading"}
        response = client.post("/predict", json={"sentence": "good"})
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        gate.set()
        ready(client)
        assert client.get("/health").json()["status"] == "ready"
        assert "/predict" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200


def test_health_answers_503_naming_the_error_when_the_model_failed_to_load():
    def failing_load():
        raise SledgeError("model.tar.gz: not a sledge archive")

    with TestClient(create_app(failing_load)) as client:
        deadline = time.monotonic() + 60
        while (health := client.get("/health")).json()["status"] == "loading":
            assert time.monotonic() < deadline
        assert health.status_code == 503
        assert health.json() == {"status": "failed", "detail": "model.tar.gz: not a sledge archive"}
        response = client.post("/predict", json={"sentence": "good"})
        assert response.status_code == 503 and "not a sledge archive" in response.json()["detail"]


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_predict_answers_one_instance_or_a_list_and_each_its_own_threshold(
    archive, scheduler, trained_run, tmp_path
):
    expected = {t: predictions(trained_run, tmp_path, t) for t in (0.0, 1.0)}
    with TestClient(app_of(archive, scheduler)) as client:
        ready(client)
        one = client.post("/predict", json={"sentence": SENTENCES[0]})
        assert one.status_code == 200
        body = one.json()
        assert set(body) == {"label", "probs", "exit_layer", "exit_index", "confidence", "truncated"}
        assert (
            body["exit_layer"] == 5 and body["label"] == expected[1.0][0]["label"]
        )  # the archive's threshold 1
        many = client.post("/predict?confidence_threshold=0", json=[{"sentence": s} for s in SENTENCES[:5]])
        assert [row["exit_layer"] for row in many.json()] == [0] * 5
        mixed = client.post(
            "/predict",
            json=[{"sentence": SENTENCES[1], "confidence_threshold": 0.0}, {"sentence": SENTENCES[2]}],
        )
        assert [row["exit_layer"] for row in mixed.json()] == [0, 5]
        for row, reference in zip(many.json(), expected[0.0]):
            assert row["label"] == reference["label"]
            assert row["probs"] == pytest.approx(reference["probs"], abs=1e-5)


@pytest.mark.parametrize(
    "body,status,message",
    [
        (b'{"sentence": "good"', 400, "not valid JSON"),
        (b"[]", 422, "a non-empty list"),
        (b'"text"', 422, "one instance"),
        (b'{"text": "good"}', 422, "needs the key 'sentence'"),
        (b'{"sentence": 3}', 422, "key 'sentence' must be a string, found int"),
        (b'{"sentence": "  "}', 422, "key 'sentence' is empty"),
        (b'{"premise": "a", "hypothesis": "b"}', 422, "key 'premise': this model reads single texts"),
        (b'[{"sentence": "good"}, {"sentence": null}]', 422, "instance 1: key 'sentence' must be a string"),
        (
            b'{"sentence": "good", "confidence_threshold": 1.5}',
            422,
            "key 'confidence_threshold' must be a number in",
        ),
        (
            b'{"sentence": "good", "confidence_threshold": "high"}',
            422,
            "key 'confidence_threshold' must be a number",
        ),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(archive, body, status, message):
    with TestClient(app_of(archive)) as client:
        ready(client)
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == status and message in response.json()["detail"]
        query = client.post("/predict?confidence_threshold=2", json={"sentence": "good"})
        assert query.status_code == 422 and "query parameter confidence_threshold" in query.json()["detail"]


def test_an_over_long_text_is_truncated_and_the_answer_says_so(archive):
    with TestClient(app_of(archive)) as client:
        ready(client)
        long = " ".join(["good"] * 500)
        rows = client.post("/predict", json=[{"sentence": long}, {"sentence": "good"}]).json()
        assert [row["truncated"] for row in rows] == [True, False]


def test_the_server_tokenizes_every_text_exactly_as_the_reader_does(archive):
    """The reader's `encode` (the engine's and the Predictor's) calls the tokenizer's backend itself for
    speed: the ids must be those of the reader's own tokenizer call."""
    engine = Engine(archive)
    reader = archive.validation_dataset_reader
    limit = reader.max_length
    texts = [*SENTENCES, "Café  naïve\tRÉSUMÉ — 3.5% ¿qué?", "  spaced   out  ", "x" * 300,
             " ".join(["good"] * (limit - 2)), " ".join(["good"] * (limit - 1)), " ".join(["good"] * 500)]
    for text in texts:
        want = reader.tokenizer(text, truncation=True, max_length=limit, return_token_type_ids=True)
        got = engine.encode({"sentence": text})
        assert (got.input_ids, got.token_type_ids) == (want["input_ids"], want["token_type_ids"]), text
        assert got.truncated == (len(reader.tokenizer(text)["input_ids"]) > limit)
    for first, second in zip(texts, reversed(texts)):  # text pairs go through the same backend call
        want = reader.tokenizer(first, second, truncation=True, max_length=limit, return_token_type_ids=True)
        got = reader.encode(first, second)
        assert (got.input_ids, got.token_type_ids) == (want["input_ids"], want["token_type_ids"])
        assert got.truncated == (len(reader.tokenizer(first, second)["input_ids"]) > limit)


def test_a_full_queue_answers_503_at_once_and_every_accepted_request_is_answered(archive, monkeypatch):
    gate, encoded, accepted = threading.Event(), [], []
    encode, submit = Engine.encode, DynamicScheduler.submit
    monkeypatch.setattr(Engine, "encode", lambda self, instance: encoded.append(1) or encode(self, instance))
    monkeypatch.setattr(DynamicScheduler, "submit", lambda self, job: accepted.append(1) or submit(self, job))
    with TestClient(app_of(archive, queue_size=2, batch_size=1, wait=gate)) as client:
        ready(client)
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(client.post, "/predict", json={"sentence": SENTENCES[i]}) for i in range(8)
            ]
            # with the model held, each request is either accepted (queued, or taken by the model
            # thread) or turned away at once: wait until all 8 are one or the other
            deadline = time.monotonic() + 60
            while len(accepted) + sum(f.done() for f in futures) < len(futures):
                assert time.monotonic() < deadline, f"{len(accepted)} accepted, the rest unanswered"
                wait([f for f in futures if not f.done()], timeout=0.05, return_when=FIRST_COMPLETED)
            done_early = [f.result() for f in futures if f.done()]
            assert 2 <= len(accepted) <= 3  # the queue's 2, and one the model thread may hold
            assert [r.status_code for r in done_early] == [503] * (8 - len(accepted))
            assert all(r.headers["Retry-After"] == "1" for r in done_early)
            # while the queue is full a request is turned away before its text is tokenized
            tokenized = len(encoded)
            assert client.post("/predict", json={"sentence": SENTENCES[0]}).status_code == 503
            assert len(encoded) == tokenized
            gate.set()
            responses = [f.result() for f in futures]
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * len(accepted) + [503] * (8 - len(accepted))  # every accepted one answered
        metrics = client.get("/metrics").text
        assert f"sledge_rejected_total {float(statuses.count(503) + 1)}" in metrics
        assert f'sledge_requests_total{{status="200"}} {float(len(accepted))}' in metrics
        assert 'sledge_requests_total{status="503"}' in metrics and "sledge_exit_layer_bucket" in metrics


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_failing_batch_fails_its_requests_only(archive, scheduler, monkeypatch):
    failures = {"left": 1}
    with TestClient(app_of(archive, scheduler)) as client:
        ready(client)
        cls, name = (Engine, "run") if scheduler == "dynamic" else (LayerBatcher, "step")
        original = getattr(cls, name)

        def flaky(self, *args, **kwargs):
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("injected failure")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, flaky)
        failed = client.post("/predict", json={"sentence": "good"})
        assert failed.status_code == 500 and "injected failure" in failed.json()["detail"]
        assert client.post("/predict", json={"sentence": "good"}).status_code == 200


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_answer_equals_batch_1_whatever_the_arrival_order_and_timing(
    archive, scheduler, trained_run, tmp_path
):
    threshold = 0.55
    expected = predictions(trained_run, tmp_path, threshold)
    rng = random.Random(3)
    order = list(range(len(SENTENCES))) * 2
    rng.shuffle(order)
    with TestClient(app_of(archive, scheduler, batch_size=4, policy=ConfidencePolicy(threshold))) as client:
        ready(client)

        def ask(index: int) -> tuple[int, dict]:
            time.sleep(rng.random() * 0.05)
            return index, client.post("/predict", json={"sentence": SENTENCES[index]}).json()

        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(ask, order))
    for index, answer in answers:
        reference = expected[index]
        assert answer["exit_layer"] == reference["exit_layer"] and answer["label"] == reference["label"]
        assert answer["probs"] == pytest.approx(reference["probs"], abs=1e-5)


def rows_of(*triples):
    return [
        {
            "kind": "sledge",
            "policy": "confidence",
            "value": v,
            "threshold": v,
            "accuracy": a,
            "average_exit_layer": layer,
            "seconds_per_instance": ms / 1000,
        }
        for v, a, layer, ms in triples
    ]


def test_budget_mode_picks_the_threshold_from_a_sweep():
    rows = rows_of(
        (0.0, 0.80, 0.0, 4.0), (0.7, 0.88, 1.0, 9.0), (0.9, 0.893, 2.2, 15.0), (1.0, 0.895, 5.0, 30.0)
    )
    assert for_accuracy_drop(rows, 0.5)["value"] == 0.9  # 0.893 >= 0.895 - 0.005; 0.88 is not
    assert for_accuracy_drop(rows, 1.5)["value"] == 0.7
    assert for_accuracy_drop(rows, 0.0)["value"] == 1.0
    assert for_latency(rows, 10.0)["value"] == 0.7 and for_latency(rows, 100)["value"] == 1.0
    with pytest.raises(SledgeError, match="no setting is that fast; the fastest measured is 4.00 ms"):
        for_latency(rows, 1.0)
    assert choose(rows, 0.5, None).__dict__ == ConfidencePolicy(0.9).__dict__
    entropy = [dict(row, policy="entropy") for row in rows]
    assert isinstance(choose(entropy, None, 10.0), EntropyPolicy)
    with pytest.raises(SledgeError, match="give one target"):
        choose(rows, 0.5, 10.0)


def test_predict_takes_a_budget_instead_of_a_threshold(trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"rows": rows_of((0.0, 0.8, 0.0, 4.0), (1.0, 0.801, 5.0, 30.0))}))
    budget = {"model.exit_policy": {"type": "budget", "sweep": str(sweep), "max_accuracy_drop": 0.5}}
    rows = predict_lines(
        trained_run["archive"],
        [{"sentence": s} for s in SENTENCES[:4]],
        tmp_path / "out.jsonl",
        "-o",
        json.dumps(budget),
    )
    assert {row["exit_layer"] for row in rows} == {0}


def test_the_online_controller_moves_the_threshold_towards_the_target():
    controller = OnlineThreshold(0.5, target=0.9, share=0.5, step=0.1, window=10, every=5, slack=0.05)
    for _ in range(10):
        controller.record(False)  # early answers disagree: raise the threshold
    assert controller.threshold == pytest.approx(0.7) and controller.agreement() == 0.0
    for _ in range(30):
        controller.record(True)  # they agree: lower it again
    assert controller.threshold < 0.7 and controller.agreement() == 1.0
    sampler = OnlineThreshold(0.5, 0.9, 0.2, seed=1)
    sampled = sum(sampler.sample() for _ in range(1000))
    assert 150 < sampled < 250


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Lines:
    """The lines a process writes, read by a thread as they come; `wait_for` waits (up to a deadline)
    for a line containing a text."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self.arrived:
                self.lines.append(line)
                self.arrived.notify_all()

    def wait_for(self, text: str, timeout: float = 120) -> None:
        with self.arrived:
            if not self.arrived.wait_for(lambda: any(text in line for line in self.lines), timeout):
                raise AssertionError(f"no line with {text!r} in {timeout} s:\n{''.join(self.lines)}")


def read_events(descriptor: int, count: int, timeout: float = 120) -> bytes:
    """`count` bytes from a pipe, waiting for them (up to a deadline)."""
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < count:
        readable, _, _ = select.select([descriptor], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            raise AssertionError(f"{len(got)} of {count} events came in {timeout} s: {got!r}")
        got += os.read(descriptor, count - len(got))
    return got


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_real_server_answers_every_accepted_request_after_sigterm_and_exits(trained_run, scheduler):
    """
    The model is held (a gate, tests/plugins/sledge_gate.py) while 8 requests of 32 sentences each
    arrive; once the server reports that it accepted all 8, it gets SIGTERM; once it says it is
    shutting down, the gate opens. Every accepted request must then be answered 200, in full, and the
    server exit 0.
    """
    port = free_port()
    events, events_in = os.pipe()
    control_out, control = os.pipe()
    plugins = str(ROOT / "tests" / "plugins")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "allennlp"),
            "serve",
            str(trained_run["archive"]),
            "--include-package",
            "sledge_gate",
            "--port",
            str(port),
            "--scheduler",
            scheduler,
            "--confidence-threshold",
            "0.6",
            "--online-agreement-target",
            "0.9",
            "--online-share",
            "0.5",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=(events_in, control_out),
        env={**os.environ, "PYTHONUNBUFFERED": "1", "SLEDGE_GATE_EVENTS": str(events_in),
             "SLEDGE_GATE_CONTROL": str(control_out),
             "PYTHONPATH": os.pathsep.join(filter(None, [plugins, os.environ.get("PYTHONPATH")]))},
    )
    os.close(events_in)
    os.close(control_out)
    output = Lines(server.stdout)
    url = f"http://127.0.0.1:{port}"
    try:
        output.wait_for("Application startup complete")  # listening (on the socket serve bound first)
        output.wait_for("sledge serve:")  # the model is loaded: its scheduler starts now
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
        with httpx.Client(timeout=120) as client:
            one = client.post(f"{url}/predict", json={"sentence": SENTENCES[0]})
            assert one.status_code == 200 and one.json()["exit_layer"] in (0, 1, 3, 5)
            bad = client.post(f"{url}/predict", json={"sentence": ""})
            assert bad.status_code == 422 and "key 'sentence' is empty" in bad.json()["detail"]
            assert "/predict" in client.get(f"{url}/openapi.json").json()["paths"]
            metrics = client.get(f"{url}/metrics").text
            assert 'sledge_requests_total{status="200"} 1.0' in metrics
            assert 'sledge_requests_total{status="422"} 1.0' in metrics and "sledge_threshold 0.6" in metrics
            assert read_events(events, 1) == b"+"  # the one answered request
            os.write(control, b"c")
            assert read_events(events, 1) == b"c"  # the model is held from here on
            with ThreadPoolExecutor(8) as pool:
                futures = [
                    pool.submit(client.post, f"{url}/predict", json=[{"sentence": s} for s in SENTENCES])
                    for _ in range(8)
                ]
                assert read_events(events, 8) == b"+" * 8  # the server accepted all 8
                assert not any(future.done() for future in futures)
                server.send_signal(signal.SIGTERM)
                output.wait_for("Shutting down")
                assert not any(future.done() for future in futures)
                os.write(control, b"o")
                answered = [future.result() for future in futures]
            assert [response.status_code for response in answered] == [200] * 8
            assert all(len(response.json()) == len(SENTENCES) for response in answered)
            assert all(row["exit_layer"] in (0, 1, 3, 5) for response in answered for row in response.json())
        assert server.wait(timeout=120) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        os.close(events)
        os.close(control)
    output.reader.join(timeout=10)
    assert "policy ConfidencePolicy(threshold=0.6" in "".join(output.lines)


def test_the_server_chooses_its_threshold_on_a_dev_file_or_from_a_sweep(archive, trained_run, tmp_path):
    from sledge.commands.serve import load

    base = {"dev_file": str(TEST), "scheduler": "dynamic"}
    engine, scheduler, _ = load(serve_args(trained_run["archive"], **base, max_accuracy_drop=100.0))
    scheduler.stop()
    assert engine.policy.value() == 0.0  # any accuracy will do: the fastest setting
    engine, scheduler, _ = load(serve_args(trained_run["archive"], **base, max_accuracy_drop=0.0))
    scheduler.stop()
    chosen = engine.policy.value()
    # Independently: threshold 1's accuracy, and the chosen threshold's, on the dev file, batch 1.
    expected = predictions(trained_run, tmp_path, 1.0)
    got = predictions(trained_run, tmp_path, chosen)
    gold = [line.split(" ", 1)[0] for line in TEST.read_text().splitlines()]
    accuracy = [sum(p["label"] == g for p, g in zip(rows, gold)) / len(gold) for rows in (expected, got)]
    assert accuracy[1] >= accuracy[0]
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps({"rows": rows_of((0.0, 0.80, 0.0, 4.0), (0.8, 0.88, 2.0, 12.0))}))
    engine, scheduler, _ = load(
        serve_args(trained_run["archive"], scheduler="dynamic", sweep_json=str(sweep), latency_budget_ms=5.0)
    )
    scheduler.stop()
    assert engine.policy.value() == 0.0


def test_the_server_batches_a_multi_exit_model_layer_by_layer_by_default(trained_run):
    from sledge.commands.serve import load

    for given, expected in ((None, ContinuousScheduler), ("dynamic", DynamicScheduler)):
        _, scheduler, _ = load(serve_args(trained_run["archive"], scheduler=given))
        scheduler.stop()
        assert type(scheduler) is expected


@pytest.mark.parametrize("scheduler", ["dynamic", "continuous"])
def test_the_schedule_replay_answers_every_accepted_request_and_counts_the_rest(
    archive, scheduler, monkeypatch
):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from schedule_replay import replay

    engine = Engine(archive)
    rows = [engine.encode({"sentence": text}) for text in SENTENCES[:12]]
    spread = [(0.002 * i, row) for i, row in enumerate(rows)]
    options = {"batch_size": 4, "max_wait_ms": 2.0}
    run = replay(engine, SCHEDULERS[scheduler], {}, spread, 0.024, queue_size=64, **options)
    assert (run["sent"], run["answered"], run["rejected"], run["server_errors"]) == (12, 12, 0, 0)
    assert run["offered_per_second"] == pytest.approx(500.0)
    assert run["p50_ms"] <= run["p95_ms"] <= run["p99_ms"]
    rows_run = run["model_calls"] * run["rows_per_call"]
    if scheduler == "dynamic":  # every request in exactly one batch
        assert rows_run == pytest.approx(12)
    else:  # each row is in one call of every layer up to its exit's
        assert rows_run == pytest.approx(12 * (run["mean_exit_layer"] + 1))
    burst = [(0.0, row) for row in rows * 4]  # 48 at once into a queue of 2
    run = replay(engine, SCHEDULERS[scheduler], {}, burst, 0.001, queue_size=2, **options)
    assert run["rejected"] > 0 and run["answered"] + run["rejected"] == 48 and run["server_errors"] == 0

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(*((Engine, "run") if scheduler == "dynamic" else (LayerBatcher, "step")), broken)
    run = replay(engine, SCHEDULERS[scheduler], {}, spread, 0.024, queue_size=64, **options)
    assert (run["answered"], run["server_errors"]) == (0, 12)


def test_the_schedule_replay_pools_arrival_sequences_and_compares_p99_with_dynamic_batching():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from schedule_replay import pooled

    def run(seed, latencies):
        return {"seed": seed, "rate": 10.0, "latencies_ms": latencies}

    slow = [float(ms) for ms in range(1, 101)]  # p99 of 200 pooled values: the 199th smallest
    results = {"runs": {
        "dynamic": [run(0, slow), run(1, slow)],
        "continuous": [run(0, [2 * ms for ms in slow]), run(1, [2 * ms for ms in slow])],
    }}
    lines = pooled(results, resamples=50)
    assert "| dynamic | 10.0 | 200 | 51.0 | 100.0 | |" in lines
    assert "| continuous | 10.0 | 200 | 102.0 | 200.0 | 2.00 (2.00-2.00) |" in lines
