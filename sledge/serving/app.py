"""
The HTTP app: POST /predict, GET /health, GET /metrics, and FastAPI's OpenAPI pages (/docs).

A request is held to the server's `RequestLimits` before any of its work is queued: the body's size
(413, from its Content-Length before anything is read, else as it comes), its JSON nesting (400),
the number of instances (413), each text's characters (cut before tokenizing, the answer flagged
`truncated`) and lone surrogates in a text (400, naming the instance and key). Once queued, a request
whose client disconnects is given up, and so is one not answered within the time limit (503 while it
waited for the model, 504 once the model had started on it): it leaves the queue and every model call
not yet run. Every answer, refusals and failures included, is counted in /metrics.
"""

import asyncio
import queue
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from sledge.errors import InvalidTextError, SledgeError
from sledge.serving.engine import Encoded, Engine
from sledge.serving.limits import RequestLimits, TooManyItems, cut_text, parse_json, too_deep
from sledge.serving.metrics import ServingMetrics
from sledge.serving.scheduler import Job, Scheduler, now

# Bodies up to this size are parsed and tokenized on the event loop (a few milliseconds at most);
# larger ones in a worker thread, so that one large request does not hold up everybody else's.
INLINE_BODY_BYTES = 64 * 1024
CLIENT_LEFT = 499  # the status counted for a request whose client disconnected (nobody reads it)
TEXT_KEYS = ("sentence", "premise", "hypothesis")

INSTANCE_SCHEMA = {
    "type": "object",
    "description": "The Predictor's JSON: `sentence`, or `premise` and `hypothesis`; optionally this "
    "instance's own `confidence_threshold` in [0, 1].",
    "properties": {
        "sentence": {"type": "string"},
        "premise": {"type": "string"},
        "hypothesis": {"type": "string"},
        "confidence_threshold": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [INSTANCE_SCHEMA, {"type": "array", "items": INSTANCE_SCHEMA}]}
            }
        },
    }
}


class Server:
    """The loaded model and its scheduler, once the background load has finished (or failed)."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.scheduler: Scheduler | None = None
        self.metrics: ServingMetrics | None = None
        self.error: str | None = None
        self.closing = False  # the server stopped: a load that finishes now stops what it started
        self.lock = threading.Lock()


def create_app(
    load: Callable[[], tuple[Engine, Scheduler, ServingMetrics]],
    limits: RequestLimits | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """
    The app of one model. `load` (run in a thread at start-up, so /health answers at once) returns the
    engine, its started scheduler and the metrics; until it has, /health and /predict answer 503. If
    it fails, /health says why, and `on_failure` (if given) is called with that reason, one line
    (`allennlp serve` prints it and stops: a server without its model has nothing to serve). Every
    request is held to `limits` (see `RequestLimits`) before anything of it is queued; one that its
    client leaves, or that runs out of time, is given up (its work dropped).
    """
    limits = limits or RequestLimits()
    server = Server()

    def load_in_background() -> None:
        try:
            loaded = load()
        except Exception as error:  # noqa: BLE001 (reported by /health and to on_failure)
            reason = str(error) if isinstance(error, SledgeError) else f"{type(error).__name__}: {error}"
            server.error = " ".join(reason.split())
            if on_failure is not None:
                on_failure(server.error)
            return
        with server.lock:
            if not server.closing:
                server.engine, server.scheduler, server.metrics = loaded
                return
        loaded[1].stop()  # the server stopped while the model was loading

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load_in_background, name="sledge-load", daemon=True)
        loader.start()
        app.state.loader = loader
        yield
        with server.lock:  # uvicorn has answered every request in flight; drain and stop
            server.closing = True
            scheduler = server.scheduler
        if scheduler is not None:
            scheduler.stop()
        # A load still running is not waited for: `allennlp serve` exits without it.

    app = FastAPI(title="sledge", description="Early-exit classification over HTTP.", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_query(request: Request, problem: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{' '.join(str(part) for part in item.get('loc', ()))}: {item.get('msg', '')}"
            for item in problem.errors()
        )
        return counted(error(422, where or str(problem)))

    @app.get("/health")
    def health() -> JSONResponse:
        if server.error is not None:
            return JSONResponse({"status": "failed", "detail": server.error}, status_code=503)
        if server.scheduler is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        engine = server.engine
        return JSONResponse({"status": "ready", "exit_layers": engine.layers, "policy": repr(engine.policy)})

    @app.get("/metrics")
    def metrics() -> Response:
        if server.metrics is None:
            return Response("", media_type="text/plain; version=0.0.4")
        return Response(server.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict(request: Request, confidence_threshold: float | None = None) -> Response:
        start = now()
        try:
            response = await answer(request, confidence_threshold, start + limits.timeout_s)
        except asyncio.CancelledError:  # the server stops at once (a second Ctrl-C): say so, no traceback
            response = error(503, "the server stopped before this request was answered", retry=True)
        except Exception as problem:  # noqa: BLE001 (a failure of this request only: answered and counted)
            response = error(500, f"the server failed on this request: {type(problem).__name__}: {problem}")
        return counted(response, start)

    def counted(response: Response, start: float | None = None) -> Response:
        if server.metrics is not None:
            server.metrics.requests.labels(status=str(response.status_code)).inc()
            if response.status_code == 200 and start is not None:
                server.metrics.latency.observe(now() - start)
        return response

    async def answer(request: Request, confidence_threshold: float | None, deadline: float) -> Response:
        if server.scheduler is None:
            return error(503, "the model is loading" if server.error is None else server.error, retry=True)
        engine, scheduler, metrics = server.engine, server.scheduler, server.metrics
        if scheduler.queue.full():  # turned away before reading, parsing and tokenizing: overload costs less
            return busy()
        body = await read_body(request, deadline)
        if isinstance(body, Response):
            return body
        if len(body) <= INLINE_BODY_BYTES:
            prepared = prepare(engine, metrics, body, confidence_threshold)
        else:  # parsed and tokenized in a worker thread: the event loop goes on answering the others
            prepared = await asyncio.to_thread(prepare, engine, metrics, body, confidence_threshold)
        if isinstance(prepared, Response):
            return prepared
        job, single = prepared
        try:
            scheduler.submit(job)
        except queue.Full:  # it filled meanwhile
            return busy()
        return await outcome(request, scheduler, job, deadline, single)

    async def read_body(request: Request, deadline: float) -> bytes | Response:
        """The body, or the answer to a body over `max_body_bytes` (413) or not complete in time (408)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:  # closed: the rest is never read
            return too_large(f"{int(declared):,} bytes", close=True)
        chunks, size = [], 0
        try:
            async with asyncio.timeout(max(deadline - now(), 0.0)):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limits.max_body_bytes:  # no end declared: the connection is closed
                        return too_large(f"more than {limits.max_body_bytes:,} bytes", close=True)
                    chunks.append(chunk)
        except TimeoutError:
            return refused(408, "body_time", f"the body was not complete within {limits.timeout_s:g} s "
                                             "(--request-timeout-s)", close=True)
        except ClientDisconnect:
            return Response(status_code=CLIENT_LEFT)
        return b"".join(chunks)

    def prepare(
        engine: Engine, metrics: ServingMetrics, body: bytes, confidence_threshold: float | None
    ) -> tuple[Job, bool] | Response:
        """The request's job (and whether it was one instance), or the answer that refuses it."""
        try:  # a list is read up to one instance past the limit, no further
            parsed = parse_json(body, limits.max_instances)
        except RecursionError:
            return too_deep_answer()
        except TooManyItems:
            return refused(
                413, "instances", f"the request holds more than {limits.max_instances:,} instances; this "
                f"server takes at most {limits.max_instances:,} per request (--max-instances): send them in "
                "several requests"
            )
        except (ValueError, UnicodeDecodeError) as problem:
            return error(400, f"the body is not valid JSON ({problem})")
        single = isinstance(parsed, dict)
        instances = [parsed] if single else parsed
        if too_deep(parsed, limits.max_json_depth):
            return too_deep_answer()
        if not isinstance(instances, list) or not instances:
            return error(422, "the body must be one instance (a JSON object) or a non-empty list of them")
        try:
            rows, settings, cut = encode_all(
                engine, instances, single, confidence_threshold, limits.max_text_chars
            )
        except InvalidTextError as problem:
            return error(400, str(problem))
        except SledgeError as problem:
            return error(422, str(problem))
        if cut:
            metrics.cut_texts.inc(cut)
        return Job(rows, settings), single

    async def outcome(
        request: Request, scheduler: Scheduler, job: Job, deadline: float, single: bool
    ) -> Response:
        """The job's answer; or, if its client leaves or its time runs out first, the job given up."""
        answered = asyncio.wrap_future(job.future)
        left = asyncio.ensure_future(client_left(request))
        try:
            done, _ = await asyncio.wait(
                {answered, left}, timeout=max(deadline - now(), 0.0), return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # the server is stopping at once
            scheduler.drop(job, "stopped")
            raise
        finally:
            left.cancel()
        if answered not in done:
            reason = "client_left" if left in done else "timeout"
            if scheduler.drop(job, reason):  # else it was answered meanwhile: answer it
                if reason == "client_left":
                    return Response(status_code=CLIENT_LEFT)  # nobody reads it; counted
                detail = (
                    f"not answered within {limits.timeout_s:g} s (--request-timeout-s); its work was dropped"
                )
                if job.started:
                    return error(504, f"{detail} (the model had started on it)")
                return error(503, f"{detail} (it was still waiting for the model)", retry=True)
        try:
            results = await answered
        except Exception as problem:  # noqa: BLE001 (the batch failed; the server goes on)
            return error(500, f"the batch of this request failed: {type(problem).__name__}: {problem}")
        return JSONResponse(results[0] if single else results)

    def busy() -> JSONResponse:
        server.metrics.rejected.inc()
        return error(503, "the server is busy: the request queue is full", retry=True)

    def too_large(size: str, close: bool = False) -> JSONResponse:
        detail = (
            f"the body is {size}; this server takes at most {limits.max_body_bytes:,} bytes per request "
            "(--max-body-bytes)"
        )
        return refused(413, "body_bytes", detail, close)

    def too_deep_answer() -> JSONResponse:
        return refused(400, "json_depth", "the body nests arrays and objects more than "
                                          f"{limits.max_json_depth} deep (--max-json-depth)")

    def refused(status: int, limit: str, detail: str, close: bool = False) -> JSONResponse:
        if server.metrics is not None:
            server.metrics.refused.labels(limit=limit).inc()
        return error(status, detail, close=close)

    return app


def encode_all(
    engine: Engine, instances: list, single: bool, confidence_threshold: float | None, max_text_chars: int
) -> tuple[list[Encoded], list[float | None], int]:
    """
    Every instance checked (a `SledgeError` naming the instance and key) and tokenized, its texts cut to
    `max_text_chars` first (`cut_text`; the answer then says `truncated`); their settings; how many
    texts were cut.
    """
    default = (
        None
        if confidence_threshold is None
        else engine.predictor.check_setting(confidence_threshold, "query parameter confidence_threshold")
    )
    rows, settings, cut = [], [], 0
    for position, instance in enumerate(instances):
        where = "" if single else f"instance {position}: "
        if not isinstance(instance, dict):
            raise SledgeError(f"{where}expected a JSON object, found {type(instance).__name__}")
        own = instance.get("confidence_threshold")
        key = f"{where}key 'confidence_threshold'"
        settings.append(default if own is None else engine.predictor.check_setting(own, key))
        texts = {k: v for k, v in instance.items() if k != "confidence_threshold"}
        long = [k for k in TEXT_KEYS if isinstance(texts.get(k), str) and len(texts[k]) > max_text_chars]
        for k in long:
            texts[k] = cut_text(texts[k], max_text_chars)
        try:
            row = engine.encode(texts)
        except SledgeError as problem:
            kind = InvalidTextError if isinstance(problem, InvalidTextError) else SledgeError
            raise kind(f"{where}{problem}") from None
        if long:
            row.truncated = True
            cut += len(long)
        rows.append(row)
    return rows, settings, cut


async def client_left(request: Request) -> None:
    """Returns once the client has disconnected (after its body was read, the server's next message)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def error(status: int, detail: str, retry: bool = False, close: bool = False) -> JSONResponse:
    """The JSON error answer; `retry`: with Retry-After; `close`: the connection is closed after it (the
    rest of a body that has no declared end, or comes too slowly, is not read)."""
    headers = {"Retry-After": "1"} if retry else {}
    if close:
        headers["Connection"] = "close"
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)
