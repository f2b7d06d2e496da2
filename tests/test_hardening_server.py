"""The server under hostile and careless clients: request limits answered before any work is queued and
counted, lone surrogates refused, no work for clients that left or ran out of time, clean stops."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from conftest import ROOT, TEST
from sledge.commands.common import load_sledge_archive
from sledge.serving.app import create_app
from sledge.serving.continuous import ContinuousScheduler
from sledge.serving.dynamic import DynamicScheduler
from sledge.serving.engine import Engine
from sledge.serving.limits import RequestLimits, TooManyItems, cut_text, parse_json
from sledge.serving.metrics import ServingMetrics
from sledge.serving.server import uvicorn_config

SENTENCES = [line.split(" ", 1)[1] for line in TEST.read_text().splitlines()]
SCHEDULERS = {"dynamic": DynamicScheduler, "continuous": ContinuousScheduler}
WAIT = 600  # seconds: the most any condition below is waited for (a busy 2-core machine)


@pytest.fixture(scope="module")
def archive(trained_run):
    return load_sledge_archive(str(trained_run["archive"]))


class Held:
    """Holds the model thread before every model call until `gate` is set; `calls` records, per call,
    the request keys (continuous) or the number of rows (dynamic) it ran; `entered` is set at the first."""

    def __init__(self) -> None:
        self.gate, self.entered, self.calls = threading.Event(), threading.Event(), []


def app_of(archive, scheduler="dynamic", limits=None, held=None, engines=None):
    """The app of the tiny model; `held` (a `Held`) holds its model thread; `engines` collects the engine."""

    def load():
        engine = Engine(archive)
        metrics = ServingMetrics(engine.layers)
        chosen = SCHEDULERS[scheduler](engine, 8, 1.0, 16, metrics)
        if held is not None:
            target, name = (engine, "run") if scheduler == "dynamic" else (chosen.batcher, "step")
            original = getattr(target, name)

            def holding(*args, **kwargs):
                if scheduler == "dynamic":
                    held.calls.append(len(args[0]))
                else:
                    held.calls.append({key[1] for group in chosen.batcher.groups for key in group.keys})
                held.entered.set()
                held.gate.wait()
                return original(*args, **kwargs)

            setattr(target, name, holding)
        if engines is not None:
            engines.append(engine)
        chosen.start()
        return engine, chosen, metrics

    return create_app(load, limits)


def until(condition, what: str) -> None:
    """Wait for `condition()` (polled), at most `WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def ready(client) -> None:
    until(lambda: client.get("/health").status_code == 200, "the model loaded")


def sample(text: str, name: str) -> float:
    """The value of the metric line `name` (labels included) in Prometheus text, 0 if absent."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextmanager
def live(app):
    """`app` served by uvicorn in a thread on a free port (real connections: disconnects are seen)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    until(lambda: server.started, "uvicorn started")
    try:
        yield server, port, thread
    finally:
        server.should_exit = True
        thread.join(WAIT)


@contextmanager
def leaving(port: int, body: bytes):
    """A client that sends a whole request and, when the block ends, leaves without reading the answer."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body) + body)
        yield


def dropped(url: str) -> float:
    return sample(httpx.get(f"{url}/metrics").text, 'sledge_dropped_total{reason="client_left"}')


def queued(url: str) -> float:
    return sample(httpx.get(f"{url}/metrics").text, "sledge_queue_depth")


def test_a_50_mb_body_is_refused_from_its_content_length_before_a_byte_of_it_is_read(archive):
    """The original attack (one 50 MB sentence; the server froze for minutes and grew by 5 GB): the
    header alone gets the 413, counted; the body is never sent here, so it was certainly not read."""
    with live(app_of(archive)) as (_, port, _):
        url = f"http://127.0.0.1:{port}"
        until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.settimeout(WAIT)
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 50000000\r\n\r\n")
            answer = b""
            while piece := connection.recv(4096):  # to the end: the server closes the connection
                answer += piece
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
        assert json.loads(body)["detail"] == (
            "the body is 50,000,000 bytes; this server takes at most 1,048,576 bytes per request "
            "(--max-body-bytes)"
        )
        metrics = httpx.get(f"{url}/metrics").text
        assert sample(metrics, 'sledge_refused_total{limit="body_bytes"}') == 1
        assert sample(metrics, 'sledge_requests_total{status="413"}') == 1
        assert httpx.post(f"{url}/predict", json={"sentence": "good"}).status_code == 200


def test_an_endless_header_is_cut_off_and_the_server_goes_on(archive):
    """One header that never ends (an HTTP parser without a bound keeps all of it): the server closes
    the connection once what the kernel's socket buffers hold has been sent (a few MiB), and answers
    the next client."""
    with live(app_of(archive)) as (_, port, _):
        url = f"http://127.0.0.1:{port}"
        until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
        sent = 0
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.settimeout(WAIT)
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nX-Long: ")
            with pytest.raises(OSError):  # reset by the server, or (once it stopped reading) timed out
                while sent < 64 << 20:
                    connection.sendall(b"a" * (64 << 10))
                    sent += 64 << 10
        assert sent <= 16 << 20
        assert httpx.post(f"{url}/predict", json={"sentence": "good"}).status_code == 200


def test_a_body_without_a_length_is_cut_off_at_the_limit(archive):
    limits = RequestLimits(max_body_bytes=1000)
    sent = []

    def chunks():  # a chunked upload of 100 KB that would go on
        for _ in range(100):
            sent.append(1)
            yield b"[" + b" " * 1023

    with TestClient(app_of(archive, limits=limits)) as client:
        ready(client)
        response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["detail"].startswith("the body is more than 1,000 bytes;")
        assert sample(client.get("/metrics").text, 'sledge_refused_total{limit="body_bytes"}') == 1


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closed(archive):
    """A slow client (11 of 100 announced bytes, then nothing) holds no worker for ever: 408 once the
    request's time limit (lowered to 2 s) has passed, the connection closed, the refusal counted."""
    app = app_of(archive, limits=RequestLimits(timeout_s=2.0))
    with live(app) as (_, port, _):
        url = f"http://127.0.0.1:{port}"
        until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 100\r\n\r\n" + b'{"sentence"')
            connection.settimeout(WAIT)
            answer = b""
            while chunk := connection.recv(65536):  # until the server closes the connection
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
        detail = json.loads(body)["detail"]
        assert detail.startswith("the body was not complete within 2 s (--request-timeout-s)")
        assert sample(httpx.get(f"{url}/metrics").text, 'sledge_refused_total{limit="body_time"}') == 1


def test_20000_instances_are_refused_before_any_is_tokenized(archive, monkeypatch):
    """The original attack (20,000 instances, accepted and computed for 8 minutes after the client
    left) against the default limit of 256; a request of exactly the limit is answered."""
    tokenized = []
    encode = Engine.encode
    monkeypatch.setattr(Engine, "encode", lambda self, inputs: tokenized.append(1) or encode(self, inputs))
    with TestClient(app_of(archive)) as client:
        ready(client)
        response = client.post("/predict", json=[{"sentence": "good"}] * 20_000)
        assert response.status_code == 413 and tokenized == []
        assert response.json()["detail"] == (
            "the request holds more than 256 instances; this server takes at most 256 per request "
            "(--max-instances): send them in several requests"
        )
        assert len(client.post("/predict", json=[{"sentence": "good"}] * 256).json()) == 256
        metrics = client.get("/metrics").text
        assert sample(metrics, 'sledge_refused_total{limit="instances"}') == 1
        assert sample(metrics, 'sledge_requests_total{status="413"}') == 1


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"sentence": "good", "note": ' + "[" * 100_000 + "]" * 100_000 + "}",
     '[{"sentence": "good", "note": [[[["deep"]]]]}]'],
    ids=["bare", "inside-an-instance", "one-past-the-limit"],
)
def test_deep_json_is_a_400_naming_the_limit_and_counted(archive, body):
    """The original attack (`[` x 100,000: a 500 from a RecursionError, not counted); the limit lowered
    to 5 here: one level less is answered."""
    with TestClient(app_of(archive, limits=RequestLimits(max_json_depth=5))) as client:
        ready(client)
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        detail = "the body nests arrays and objects more than 5 deep (--max-json-depth)"
        assert response.json()["detail"] == detail
        fits = client.post("/predict", json=[{"sentence": "good", "note": [[["deep"]]]}])
        assert fits.status_code == 200
        metrics = client.get("/metrics").text
        assert sample(metrics, 'sledge_refused_total{limit="json_depth"}') == 1
        assert sample(metrics, 'sledge_requests_total{status="400"}') == 1


@pytest.mark.parametrize(
    "body, detail",
    [('{"sentence": "good \\ud800 film"}', "key 'sentence' holds a lone surrogate (\\ud800 at character 6)"),
     ('[{"sentence": "fine"}, {"sentence": "\\udfff"}]',
      "instance 1: key 'sentence' holds a lone surrogate (\\udfff at character 1)")],
)
def test_a_lone_surrogate_is_a_400_naming_the_key(archive, body, detail):
    """The original attack (a 500, `TextInputSequence must be str`, not counted)."""
    with TestClient(app_of(archive)) as client:
        ready(client)
        response = client.post("/predict", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["detail"].startswith(detail)
        assert sample(client.get("/metrics").text, 'sledge_requests_total{status="400"}') == 1


def test_a_long_text_is_cut_before_it_is_tokenized_and_answered_as_the_whole_text(archive, monkeypatch):
    """A text of 1 MB is cut to --max-text-chars (lowered to 1,000 here) before the tokenizer sees it; as
    the part kept holds more than the reader's max_length of tokens, the answer is the whole text's."""
    seen = []
    encode = Engine.encode
    monkeypatch.setattr(
        Engine, "encode", lambda self, inputs: seen.append(len(inputs["sentence"])) or encode(self, inputs)
    )
    words = " ".join(SENTENCES)
    long = (words + " ") * (1_000_000 // len(words))
    with TestClient(app_of(archive, limits=RequestLimits(max_text_chars=2_000_000))) as client:
        ready(client)
        whole = client.post("/predict", json={"sentence": long}).json()
    with TestClient(app_of(archive, limits=RequestLimits(max_text_chars=1000))) as client:
        ready(client)
        cut = client.post("/predict", json={"sentence": long}).json()
        assert sample(client.get("/metrics").text, "sledge_cut_texts_total") == 1
    assert seen[0] == len(long) > 900_000 and seen[1] <= 1000
    assert cut["truncated"] and whole["truncated"]
    assert {k: cut[k] for k in ("label", "exit_layer")} == {k: whole[k] for k in ("label", "exit_layer")}
    assert cut["probs"] == pytest.approx(whole["probs"], abs=1e-5)


def test_a_cut_keeps_whole_words_and_the_reader_s_first_tokens(archive):
    reader = archive.validation_dataset_reader
    text = " ".join(SENTENCES * 20)
    for limit in (150, 299, 300, 301, 1000):
        kept = cut_text(text, limit)
        assert len(kept) <= limit and text.startswith(kept) and text[len(kept)].isspace()
        ids = reader.tokenizer(kept)["input_ids"]
        assert ids[:-1] == reader.tokenizer(text)["input_ids"][: len(ids) - 1]
    assert cut_text("x" * 500, 300) == "x" * 300  # no space to cut at
    assert cut_text("short", 300) == "short"


@pytest.mark.parametrize(
    "text",
    ['[{"sentence": "a"}, {"sentence": "b"}]', ' [ ] ', '[1,2,3]', '{"sentence": "[x]"}', '"x"', "7",
     '[["a", "]"], {"b": [1, 2]}]', '\t[ "\\ud800" ]\n', '[1 2]', '[1,]', '[1] x', '[', '[1', '[,1]', '',
     ' [1, 2] ]', "[{'a': 1}]"],
)
def test_the_body_parser_reads_what_json_loads_reads(text):
    """`parse_json` against `json.loads` itself: the same value, or a ValueError for the same input."""
    for body in (text.encode("utf-8"), text.encode("utf-16")):
        try:
            expected = json.loads(body)
        except ValueError:
            with pytest.raises(ValueError):
                parse_json(body, 256)
        else:
            assert parse_json(body, 256) == expected


def test_the_body_parser_stops_one_item_past_the_limit():
    """Three items of a list pass a limit of 3; the 4th is refused before it is parsed (it is not valid
    JSON, which would otherwise be the error), and an object is never counted."""
    assert parse_json(b'[1, {"a": [2]}, 3]', 3) == [1, {"a": [2]}, 3]
    with pytest.raises(TooManyItems):
        parse_json(b"[1, 2, 3, not json", 3)
    assert parse_json(b'{"a": 1, "b": 2, "c": 3, "d": 4}', 3) == {"a": 1, "b": 2, "c": 3, "d": 4}
    with pytest.raises(RecursionError):
        parse_json(b"[" * 100_000, 3)


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_a_client_that_left_gets_no_work_and_sigterm_drains_only_those_still_waiting(archive, scheduler):
    """X waits for its answer while the model is held on it; A's client sends 3 instances and leaves:
    A leaves the queue at once. A graceful stop (what SIGTERM does) answers X and ends; A never ran."""
    held = Held()
    with live(app_of(archive, scheduler, held=held)) as (server, port, thread):
        url = f"http://127.0.0.1:{port}"
        until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
        with ThreadPoolExecutor(1) as pool:
            x = pool.submit(httpx.post, f"{url}/predict", json={"sentence": "good"}, timeout=WAIT)
            until(held.entered.is_set, "the model started on X")
            with leaving(port, json.dumps([{"sentence": s} for s in SENTENCES[:3]]).encode()):
                until(lambda: queued(url) == 1, "A queued")
            until(lambda: dropped(url) == 1, "A given up")
            assert queued(url) == 0
            server.should_exit = True
            held.gate.set()
            assert x.result().status_code == 200
        thread.join(WAIT)
        assert not thread.is_alive()
    if scheduler == "dynamic":
        assert held.calls == [1]  # X's one row
    else:
        assert len({key for keys in held.calls for key in keys}) == 1  # every step ran X's rows only


def test_rows_in_flight_of_a_client_that_left_run_no_further_layer(archive):
    """Continuous batching: A's rows are in flight (the model held at their first layer) when A's client
    leaves; once the model goes on, no later step carries them; B is answered as usual."""
    held = Held()
    with live(app_of(archive, "continuous", held=held)) as (_, port, _):
        url = f"http://127.0.0.1:{port}"
        until(lambda: httpx.get(f"{url}/health").status_code == 200, "the model loaded")
        with leaving(port, json.dumps([{"sentence": s} for s in SENTENCES[:3]]).encode()):
            until(held.entered.is_set, "the model started on A")
        until(lambda: dropped(url) == 1, "A given up")
        held.gate.set()
        assert httpx.post(f"{url}/predict", json={"sentence": "good"}, timeout=WAIT).status_code == 200
    first, later = held.calls[0], held.calls[1:]
    assert len(first) == 1 and later and all(not (keys & first) for keys in later)


def test_a_request_out_of_time_is_answered_503_or_504_and_its_work_dropped(archive):
    """--request-timeout-s lowered to 3 s, the model held on X: X (started) gets 504, A (still queued)
    503 with Retry-After; A never runs once the model goes on."""
    held = Held()
    with TestClient(app_of(archive, held=held, limits=RequestLimits(timeout_s=3.0))) as client:
        ready(client)
        with ThreadPoolExecutor(2) as pool:
            x = pool.submit(client.post, "/predict", json={"sentence": "good"})
            until(held.entered.is_set, "the model started on X")
            a = pool.submit(client.post, "/predict", json=[{"sentence": "good"}, {"sentence": "bad"}])
            x, a = x.result(), a.result()
        assert x.status_code == 504 and "the model had started on it" in x.json()["detail"]
        assert a.status_code == 503 and a.headers["Retry-After"] == "1"
        assert a.json()["detail"] == ("not answered within 3 s (--request-timeout-s); its work was dropped "
                                      "(it was still waiting for the model)")
        held.gate.set()
        assert client.post("/predict", json={"sentence": "good"}).status_code == 200
        metrics = client.get("/metrics").text
        assert sample(metrics, 'sledge_dropped_total{reason="timeout"}') == 2
    assert held.calls == [1, 1]  # X, then the last request: A never ran


def serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "allennlp"), "serve", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def test_serve_on_a_busy_port_fails_before_loading_the_model(trained_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve(str(trained_run["archive"]), "--port", str(port))
        log, _ = server.communicate(timeout=WAIT * 2)
    assert server.returncode == 1
    where = f"127.0.0.1:{port}"
    assert f"allennlp serve: error: --port {port}: cannot listen on {where} (Address already in use)" in log
    assert "loading archive file" not in log and "Traceback" not in log


def test_a_stop_while_the_model_loads_exits_at_once_and_leaves_nothing(tmp_path):
    """The archive arrives through a pipe that nobody writes: the model is loading for ever. SIGTERM ends
    the server at once (it used to wait for the load), with no traceback and no extracted folder left."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    pipe = tmp_path / "model.tar.gz"
    os.mkfifo(pipe)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve(str(pipe), "--port", str(port), env={"TMPDIR": str(temp)})
    try:
        def loading() -> bool:
            assert server.poll() is None
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "loading"}
            except httpx.TransportError:
                return False

        until(loading, "the server answers while the model loads")
        server.send_signal(signal.SIGTERM)
        log, _ = server.communicate(timeout=WAIT)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0
    assert "sledge serve: stopped at once (the model was still loading)" in log
    assert "Traceback" not in log and "terminate called" not in log
    assert list(temp.glob("sledge-archive-*")) == []


def test_sigint_after_sigterm_answers_the_waiting_clients_503_and_exits_cleanly(trained_run):
    """The original weak point (an asyncio traceback and a C++ `terminate called without an active
    exception`): clients still waiting get 200 (answered in the drain) or 503, the exit is 130."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = serve(str(trained_run["archive"]), "--port", str(port), "--batch-size", "1",
                   "--confidence-threshold", "1.0", "--scheduler", "dynamic")
    url = f"http://127.0.0.1:{port}"
    heavy = [{"sentence": " ".join(SENTENCES)} for _ in range(64)]
    try:
        def up() -> bool:
            assert server.poll() is None
            try:
                return httpx.get(f"{url}/health").status_code == 200
            except httpx.TransportError:
                return False

        until(up, "the server is ready")
        with ThreadPoolExecutor(3) as pool:
            clients = [pool.submit(httpx.post, f"{url}/predict", json=heavy, timeout=WAIT) for _ in range(3)]
            until(lambda: sample(httpx.get(f"{url}/metrics").text, "sledge_batch_rows_count") > 0,
                  "the model is at work")
            server.send_signal(signal.SIGTERM)
            server.send_signal(signal.SIGINT)
            statuses = sorted(client.result().status_code for client in clients)
        log, _ = server.communicate(timeout=WAIT)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 130
    assert set(statuses) <= {200, 503}
    assert "Traceback" not in log and "terminate called" not in log
