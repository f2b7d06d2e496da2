"""The load generator of benchmarks/serve_load.py against a real HTTP server (uvicorn, in a thread)."""

import asyncio
import socket
import sys
import threading
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from serve_load import Client, closed_loop, open_loop  # noqa: E402


@pytest.fixture(scope="module")
def server():
    app = FastAPI()
    app.state.seen = []
    app.state.arrived = threading.Condition()  # notified whenever a request has ended on the server

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        text = (await request.json())["sentence"]
        await asyncio.sleep(1.0 if text == "slow" else 0.001)  # requests overlap
        with app.state.arrived:
            app.state.seen.append(text)
            app.state.arrived.notify_all()
        return JSONResponse({"detail": "busy"} if text == "busy" else {"echo": text * 50},
                            status_code=503 if text == "busy" else 200)

    # the socket listens before the server thread starts: connections wait in its backlog meanwhile
    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    # idle connections are closed after 0.3 s, so that the client meets one the server closed
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=0.3))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", app.state
    server.should_exit = True
    thread.join()
    listening.close()


def test_the_client_reads_each_status_reuses_a_connection_and_replaces_one_the_server_closed(
    server, monkeypatch
):
    url, _ = server
    opened = []
    connect = asyncio.open_connection

    async def counting(*args, **kwargs):
        opened.append(args)
        return await connect(*args, **kwargs)

    monkeypatch.setattr(asyncio, "open_connection", counting)

    async def go() -> list:
        client = Client(url)
        statuses = [await client.post("/predict", {"sentence": "ok"}), len(client.idle)]
        statuses += [await client.post("/predict", {"sentence": "busy"}), len(client.idle)]
        reader, _ = client.idle[0]
        assert await asyncio.wait_for(reader.read(1), 30) == b""  # the server closed the idle connection
        statuses += [await client.post("/predict", {"sentence": "ok"}), len(client.idle)]
        client.close()
        return statuses

    # one connection at a time: each answer (its body read to the end) frees it for the next request
    assert asyncio.run(go()) == [200, 1, 503, 1, 200, 1]
    assert len(opened) == 2  # the first, and the one that replaced it after the server closed it


def test_the_open_loop_counts_every_request_sent_as_answered_or_rejected(server):
    url, _ = server
    run = asyncio.run(open_loop(url, ["a", "b", "busy"], rate=200.0, seconds=1.0, seed=3))
    assert run["sent"] > 100  # Poisson arrivals at 200/s for 1 s
    assert run["answered"] + run["rejected"] == run["sent"]
    assert run["rejected"] > 0 and run["answered"] > run["rejected"]  # "busy" is 1 text of 3
    assert run["server_errors"] == run["other"] == 0
    assert 0 <= run["send_lag_p50_ms"] <= run["send_lag_max_ms"]
    assert run["p50_ms"] <= run["p99_ms"]
    latencies = run["latencies_ms"]  # every answered request's, sorted: the percentiles are read from them
    assert len(latencies) == run["answered"] and latencies == sorted(latencies)
    assert run["p99_ms"] == pytest.approx(latencies[int(0.99 * len(latencies))], abs=0.01)


def test_the_closed_loop_counts_every_answer_of_its_concurrent_clients(server):
    url, state = server
    seen = state.seen
    before = len(seen)
    answered, seconds = asyncio.run(closed_loop(url, ["a", "b", "busy"], clients=16, seconds=0.5))
    texts = seen[before:]
    assert seconds >= 0.5 and len(texts) > 16  # each client sent several
    assert answered == sum(text != "busy" for text in texts)  # every 200, none lost between clients


def test_an_answer_later_than_the_timeout_raises_and_is_not_sent_again(server):
    url, state = server
    before = len(state.seen)

    async def go() -> None:
        client = Client(url, timeout=0.2)
        assert await client.post("/predict", {"sentence": "ok"}) == 200  # a kept-alive connection
        with pytest.raises(TimeoutError):
            await client.post("/predict", {"sentence": "slow"})
        client.close()

    asyncio.run(go())
    with state.arrived:  # the slow request ends on the server
        assert state.arrived.wait_for(lambda: len(state.seen) >= before + 2, timeout=30)
    assert state.seen[before:] == ["ok", "slow"]
