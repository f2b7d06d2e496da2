"""The server's Prometheus metrics, in their own registry."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServingMetrics:
    """
    Counters and histograms of one server: requests by HTTP status, request latency, the rows each model
    call ran, the exit layer of every answered instance, queue depth, rejected requests (a full queue),
    requests refused by a request limit (by limit), texts cut to the most characters, requests given up
    (their client left, or their time ran out), and (online mode) the current threshold and the live
    agreement of early answers with the last exit. Every label takes a few fixed values, so the text
    does not grow with what clients send.

    Parameters
    ----------
    exit_layers : `list[int]`
        The model's exit layers (the exit-layer histogram's buckets).
    """

    def __init__(self, exit_layers: list[int]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sledge_requests", "HTTP requests by status code", ["status"], registry=self.registry
        )
        self.latency = Histogram(
            "sledge_request_latency_seconds",
            "Time from arrival to answer",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "sledge_batch_rows",
            "Rows run together in one model call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.exit_layer = Histogram(
            "sledge_exit_layer",
            "0-based layer of the exit each instance took",
            buckets=[float(layer) for layer in exit_layers],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "sledge_queue_depth", "Requests waiting for the model", registry=self.registry
        )
        self.rejected = Counter(
            "sledge_rejected", "Requests refused because the queue was full", registry=self.registry
        )
        self.refused = Counter(
            "sledge_refused",
            "Requests refused by a request limit: body_bytes (413), instances (413), json_depth (400), "
            "body_time (408)",
            ["limit"],
            registry=self.registry,
        )
        self.cut_texts = Counter(
            "sledge_cut_texts", "Texts cut to --max-text-chars before tokenizing", registry=self.registry
        )
        self.dropped = Counter(
            "sledge_dropped",
            "Requests given up, their work dropped: client_left (the client disconnected), timeout "
            "(not answered within --request-timeout-s), stopped (the server stopped at once)",
            ["reason"],
            registry=self.registry,
        )
        self.threshold = Gauge(
            "sledge_threshold",
            "The exit policy's setting for requests without their own",
            registry=self.registry,
        )
        self.agreement = Gauge(
            "sledge_online_agreement",
            "Online mode: share of sampled early answers equal to the last exit's",
            registry=self.registry,
        )
        self.shadow_rows = Counter(
            "sledge_online_shadow_rows", "Online mode: rows also run to the last exit", registry=self.registry
        )

    def text(self) -> bytes:
        """Everything, in Prometheus' text format."""
        return generate_latest(self.registry)
