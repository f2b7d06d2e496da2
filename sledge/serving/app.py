"""The HTTP app: POST /predict, GET /health, GET /metrics, and FastAPI's OpenAPI pages (/docs)."""

import asyncio
import json
import queue
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sledge.errors import SledgeError
from sledge.serving.engine import Engine
from sledge.serving.metrics import ServingMetrics
from sledge.serving.scheduler import Job, Scheduler, now

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


def create_app(
    load: Callable[[], tuple[Engine, Scheduler, ServingMetrics]],
    on_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """
    The app of one model. `load` (run in a thread at start-up, so /health answers at once) returns the
    engine, its started scheduler and the metrics; until it has, /health and /predict answer 503. If
    it fails, /health says why, and `on_failure` (if given) is called with that reason, one line
    (`allennlp serve` prints it and stops: a server without its model has nothing to serve).
    """
    server = Server()

    def load_in_background() -> None:
        try:
            server.engine, server.scheduler, server.metrics = load()
        except Exception as error:  # noqa: BLE001 (reported by /health and to on_failure)
            reason = str(error) if isinstance(error, SledgeError) else f"{type(error).__name__}: {error}"
            server.error = " ".join(reason.split())
            if on_failure is not None:
                on_failure(server.error)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loader = threading.Thread(target=load_in_background, name="sledge-load", daemon=True)
        loader.start()
        yield
        loader.join()
        if server.scheduler is not None:  # uvicorn has answered every request in flight; drain and stop
            server.scheduler.stop()

    app = FastAPI(title="sledge", description="Early-exit classification over HTTP.", lifespan=lifespan)

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
    async def predict(request: Request, confidence_threshold: float | None = None) -> JSONResponse:
        start = now()
        response = await answer(request, confidence_threshold)
        if server.metrics is not None:
            server.metrics.requests.labels(status=str(response.status_code)).inc()
            if response.status_code == 200:
                server.metrics.latency.observe(now() - start)
        return response

    async def answer(request: Request, confidence_threshold: float | None) -> JSONResponse:
        if server.scheduler is None:
            return error(503, "the model is loading" if server.error is None else server.error, retry=True)
        engine, scheduler = server.engine, server.scheduler
        if scheduler.queue.full():  # turned away before parsing and tokenizing: overload costs less
            return busy()
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as problem:
            return error(400, f"the body is not valid JSON ({problem})")
        single = isinstance(body, dict)
        instances = [body] if single else body
        if not isinstance(instances, list) or not instances:
            return error(422, "the body must be one instance (a JSON object) or a non-empty list of them")
        try:
            check = engine.predictor.check_setting
            default = (
                None
                if confidence_threshold is None
                else check(confidence_threshold, "query parameter confidence_threshold")
            )
            rows, settings = [], []
            for position, instance in enumerate(instances):
                where = "" if single else f"instance {position}: "
                if not isinstance(instance, dict):
                    raise SledgeError(f"{where}expected a JSON object, found {type(instance).__name__}")
                own = instance.get("confidence_threshold")
                settings.append(
                    default if own is None else check(own, f"{where}key 'confidence_threshold'")
                )
                try:
                    rows.append(
                        engine.encode({k: v for k, v in instance.items() if k != "confidence_threshold"})
                    )
                except SledgeError as problem:
                    raise SledgeError(f"{where}{problem}") from None
        except SledgeError as problem:
            return error(422, str(problem))
        try:
            future = scheduler.submit(Job(rows, settings))
        except queue.Full:  # it filled meanwhile
            return busy()
        try:
            results = await asyncio.wrap_future(future)
        except Exception as problem:  # noqa: BLE001 (the batch failed; the server goes on)
            return error(500, f"the batch of this request failed: {type(problem).__name__}: {problem}")
        return JSONResponse(results[0] if single else results)

    def busy() -> JSONResponse:
        server.metrics.rejected.inc()
        return error(503, "the server is busy: the request queue is full", retry=True)

    return app


def error(status: int, detail: str, retry: bool = False) -> JSONResponse:
    headers = {"Retry-After": "1"} if retry else None
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
