"""`allennlp serve`: an HTTP server of a sledge model, with dynamic or layer-level continuous batching."""

import argparse
import sys

import torch
from allennlp.commands.subcommand import Subcommand

from sledge.commands.arguments import non_negative_float, positive_float, positive_int, unit_float
from sledge.commands.checks import check_archive
from sledge.commands.common import exit_logits, load_sledge_archive, read_labelled, tensor_batches
from sledge.errors import SledgeError
from sledge.files import check_input_path
from sledge.nn import BACKENDS, QUANTIZE, Cascade, backend_of, full_pass_views, simulate_exits
from sledge.serving.budget import OnlineThreshold, choose, for_accuracy_drop, sweep_rows
from sledge.serving.continuous import DEADLINE_MS, MAX_SKIPS, ContinuousScheduler
from sledge.serving.dynamic import DynamicScheduler
from sledge.serving.engine import Engine
from sledge.serving.limits import RequestLimits
from sledge.serving.metrics import ServingMetrics

SCHEDULERS = {"dynamic": DynamicScheduler, "continuous": ContinuousScheduler}


@Subcommand.register("serve")
class Serve(Subcommand):
    """Serve a sledge model (multi-exit or cascade) over HTTP."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "An HTTP server (FastAPI on uvicorn) of a sledge archive: POST /predict (one instance or a "
            "list; the Predictor's JSON in and out; a request's own confidence_threshold as a query "
            "parameter or a key of an instance), GET /health (ready once the model is loaded), GET /metrics "
            "(Prometheus), /docs (OpenAPI). One thread runs the model: --scheduler dynamic gathers up to "
            "--batch-size rows or --max-wait-ms and runs the batched early-exit runner; continuous batches "
            "layer by layer, merging the rows of different requests that need the same layer. A full queue "
            "answers 503 with Retry-After. Every request is held to the limits below before it is queued "
            "(body size 413, instances 413, JSON nesting 400, characters per text: cut and flagged "
            "truncated; a lone surrogate in a text 400); a request whose client disconnects, or that is "
            "not answered within --request-timeout-s (503 or 504), is given up and its work dropped. "
            "SIGTERM or Ctrl-C stops accepting, answers the requests whose clients still wait, then exits "
            "(0, or 130 after Ctrl-C); a second Ctrl-C exits at once. "
            "Instead of the archive's threshold: --max-accuracy-drop (with --sweep-json or --dev-file) or "
            "--latency-budget-ms (with --sweep-json); online mode keeps the agreement of early answers "
            "with the last exit at --online-agreement-target."
        )
        subparser = parser.add_parser(self.name, description=description, help="Serve a model over HTTP.")
        subparser.add_argument("archive_file", help="a sledge model.tar.gz (multi-exit or cascade)")
        subparser.add_argument("--host", default="127.0.0.1")
        subparser.add_argument(
            "--port", type=int, default=8000, help="checked free before the model is loaded"
        )
        subparser.add_argument("--batch-size", type=positive_int, default=32, help="rows per model call")
        subparser.add_argument(
            "--max-wait-ms", type=non_negative_float, default=5.0, help="dynamic: how long to gather"
        )
        subparser.add_argument(
            "--deadline-ms",
            type=non_negative_float,
            default=DEADLINE_MS,
            help="continuous: rows in flight this long go first while at most --batch-size rows are in "
            "flight (0: off)",
        )
        subparser.add_argument(
            "--max-skips",
            type=positive_int,
            default=MAX_SKIPS,
            help="continuous: steps of other layers a group of rows may wait before it runs next (default "
            f"{MAX_SKIPS}: in effect the oldest rows' layer runs next; more lets rows wait to catch up and "
            "fill calls, which on a 2-core CPU gave a longer tail under load)",
        )
        subparser.add_argument("--queue-size", type=positive_int, default=256, help="requests that may wait")
        limits = RequestLimits()
        subparser.add_argument(
            "--max-body-bytes",
            type=positive_int,
            default=limits.max_body_bytes,
            help="the largest request body, in bytes; larger is answered 413 before it is read (the "
            "default, 1 MiB, holds about 256 texts of 4,000 characters)",
        )
        subparser.add_argument(
            "--max-instances",
            type=positive_int,
            default=limits.max_instances,
            help="the most instances in one request; more is answered 413 before any is tokenized",
        )
        subparser.add_argument(
            "--max-text-chars",
            type=positive_int,
            default=limits.max_text_chars,
            help="longer texts are cut to this many characters (at a space) before they are tokenized, and "
            "their answer says truncated (the default is several times what 512 tokens take in ordinary "
            "text)",
        )
        subparser.add_argument(
            "--max-json-depth",
            type=positive_int,
            default=limits.max_json_depth,
            help="the deepest nesting of arrays and objects in a body; deeper is answered 400 (a list of "
            "instances is 2 deep)",
        )
        subparser.add_argument(
            "--request-timeout-s",
            type=positive_float,
            default=limits.timeout_s,
            help="seconds: a request not answered this long after it arrived is answered 503 (still "
            "queued) or 504 (running) and its work dropped; a body not complete by then, 408",
        )
        subparser.add_argument(
            "--backend", choices=sorted(BACKENDS), default=None,
            help="what runs the model (default: the archive's model.backend, torch): onnxruntime runs "
            "its exported pieces with ONNX Runtime on the CPU (docs/backends.md)",
        )
        subparser.add_argument(
            "--quantize", choices=QUANTIZE, default=None,
            help="int8 inference (default: the archive's model.quantize, none); int8 and int8-static "
            "answer each request as it would be answered alone",
        )
        subparser.add_argument(
            "--scheduler",
            choices=sorted(SCHEDULERS),
            default=None,
            help="default: continuous for a multi-exit model, dynamic for a cascade (continuous batching "
            "runs one model's layers)",
        )
        subparser.add_argument(
            "--confidence-threshold",
            type=unit_float,
            default=None,
            help="the threshold of requests without their own (default: the archive's)",
        )
        subparser.add_argument(
            "--max-accuracy-drop",
            type=float,
            default=None,
            metavar="POINTS",
            help="the fastest threshold within POINTS of no early exit, on --dev-file or in --sweep-json",
        )
        subparser.add_argument(
            "--latency-budget-ms",
            type=float,
            default=None,
            help="the most accurate threshold measured (in --sweep-json) at most this fast",
        )
        subparser.add_argument("--sweep-json", default=None, help="a sweep.json of this model")
        subparser.add_argument("--dev-file", default=None, help="labelled data to choose the threshold on")
        subparser.add_argument(
            "--online-agreement-target",
            type=unit_float,
            default=None,
            help="online mode: keep this share of early answers equal to the last exit's",
        )
        subparser.add_argument(
            "--online-share",
            type=unit_float,
            default=0.05,
            help="online mode: the share of instances also run to the last exit",
        )
        subparser.set_defaults(func=serve_from_args)
        return subparser


def serve_from_args(args: argparse.Namespace) -> None:
    from sledge.serving.app import create_app
    from sledge.serving.server import listening_socket, run

    check_archive(args.archive_file, "archive_file")
    for option, path in (("--sweep-json", args.sweep_json), ("--dev-file", args.dev_file)):
        if path is not None:
            check_input_path(path, option)
    if args.max_accuracy_drop is not None and args.latency_budget_ms is not None:
        raise SledgeError("give one target: --max-accuracy-drop or --latency-budget-ms")
    if args.latency_budget_ms is not None and args.sweep_json is None:
        raise SledgeError("--latency-budget-ms needs --sweep-json (the measured times)")
    if args.max_accuracy_drop is not None and args.sweep_json is None and args.dev_file is None:
        raise SledgeError("--max-accuracy-drop needs --sweep-json or --dev-file")
    listener = listening_socket(args.host, args.port)  # before the model loads: a busy port fails at once
    limits = RequestLimits(
        max_body_bytes=args.max_body_bytes,
        max_instances=args.max_instances,
        max_text_chars=args.max_text_chars,
        max_json_depth=args.max_json_depth,
        timeout_s=args.request_timeout_s,
    )
    failures: list[str] = []

    def stop(reason: str) -> None:  # the model could not be loaded: stop, then say why in one line
        failures.append(reason)
        app.state.stop_server()

    app = create_app(lambda: load(args), limits, on_failure=stop)
    code = run(app, listener)
    if failures:  # printed after uvicorn's shutdown lines, so that it is the last line a user sees
        print(f"allennlp serve: error: {failures[0]}", file=sys.stderr, flush=True)
        sys.exit(1)
    if code:
        sys.exit(code)


def load(args: argparse.Namespace):
    """Load the model, settle its policy, start the scheduler: what the app's start-up runs."""
    overrides = {}
    if getattr(args, "backend", None) is not None:
        overrides["model.backend"] = args.backend
    if getattr(args, "quantize", None) is not None:
        overrides["model.quantize"] = args.quantize
    archive = load_sledge_archive(args.archive_file, overrides=overrides)
    engine = Engine(archive)
    if args.confidence_threshold is not None:
        engine.policy = engine.policy.with_setting(args.confidence_threshold)
    if args.sweep_json is not None and (
        args.max_accuracy_drop is not None or args.latency_budget_ms is not None
    ):
        engine.policy = choose(
            sweep_rows(args.sweep_json, None), args.max_accuracy_drop, args.latency_budget_ms
        )
    elif args.max_accuracy_drop is not None:
        engine.policy = on_dev_file(archive, engine, args.dev_file, args.max_accuracy_drop)
    online = None
    if args.online_agreement_target is not None:
        if engine.labels is None or engine.policy.setting != "threshold":
            raise SledgeError("online mode needs a classifier whose exit policy has a threshold")
        online = OnlineThreshold(engine.policy.value(), args.online_agreement_target, args.online_share)
    cascade = isinstance(engine.core, Cascade)
    name = args.scheduler or ("dynamic" if cascade else "continuous")
    if cascade and name == "continuous":
        raise SledgeError(
            f"{args.archive_file}: a cascade is served with --scheduler dynamic (continuous batching runs "
            "one model's layers)"
        )
    for member in getattr(engine.core, "members", [engine.core]):  # nothing exported while requests wait
        backend_of(member).prepare(per_layer=name == "continuous")
    backend = describe_backend(engine.core)
    print(f"sledge serve: {args.archive_file}, policy {engine.policy!r}, scheduler {name}, backend {backend}",
          flush=True)
    metrics = ServingMetrics(engine.layers)
    continuous = name == "continuous"
    options = {"deadline_ms": args.deadline_ms, "max_skips": args.max_skips} if continuous else {}
    scheduler = SCHEDULERS[name](
        engine, args.batch_size, args.max_wait_ms, args.queue_size, metrics, online, **options
    )
    scheduler.start()
    return engine, scheduler, metrics


def describe_backend(core) -> str:
    """The backend a core (or a cascade's first member) runs on, with its settings."""
    return backend_of(getattr(core, "members", [core])[0]).describe()


def on_dev_file(archive, engine: Engine, dev_file: str, points: float):
    """The fastest setting (0, 0.01, ..., 1) within `points` of no early exit on `dev_file`."""
    instances = read_labelled(archive, dev_file)
    logits, labels = exit_logits(archive.model, tensor_batches(instances, archive, 64, torch.device("cpu")))
    views = full_pass_views(engine.core, logits, None)
    rows = []
    for value in [i / 100 for i in range(101)]:
        exits = simulate_exits(engine.policy.with_setting(value), views)
        taken = logits[exits, torch.arange(len(labels))]
        layers = torch.tensor(engine.layers, dtype=torch.float)[exits]
        rows.append(
            {
                "value": value,
                "accuracy": float((taken.argmax(-1) == labels).float().mean()),
                "average_exit_layer": float(layers.mean()),
                "policy": engine.policy.describe(),
            }
        )
    return engine.policy.with_setting(for_accuracy_drop(rows, points)["value"])
