"""What both batch schedulers share: a bounded queue of requests and one thread that runs the model."""

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from sledge.serving.budget import OnlineThreshold
from sledge.serving.engine import Encoded, Engine
from sledge.serving.metrics import ServingMetrics


@dataclass(eq=False)  # compared by identity
class Job:
    """One request: its instances, each one's own setting (None: the server's), and the future answer
    (cancelled when the request is given up: its client left or its time ran out)."""

    rows: list[Encoded]
    settings: list[float | None]
    future: Future = field(default_factory=Future)
    results: list[dict | None] = field(default_factory=list)
    early: dict[int, int] = field(default_factory=dict)  # online mode: row -> early label index
    started: bool = False  # the model thread has taken it from the queue

    def __post_init__(self) -> None:
        self.results = [None] * len(self.rows)

    def given_up(self) -> bool:
        return self.future.cancelled()


class RequestQueue:
    """
    The requests waiting for the model, oldest first, at most `size` of them: `put_nowait` raises
    `queue.Full` at once when it is full, and a request given up leaves it at once (`remove`), so that
    it neither holds a place nor reaches the model.

    Parameters
    ----------
    size : `int`
        The most requests waiting.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.jobs: deque[Job] = deque()
        self.ready = threading.Condition()

    def put_nowait(self, job: Job) -> None:
        with self.ready:
            if len(self.jobs) >= self.size:
                raise queue.Full
            self.jobs.append(job)
            self.ready.notify()

    def get(self, timeout: float) -> Job | None:
        """The oldest request, waiting at most `timeout` seconds for one; None if none came."""
        with self.ready:
            if not self.ready.wait_for(lambda: self.jobs, timeout):
                return None
            return self.jobs.popleft()

    def remove(self, job: Job) -> None:
        with self.ready:
            if job in self.jobs:
                self.jobs.remove(job)

    def qsize(self) -> int:
        return len(self.jobs)

    def full(self) -> bool:
        return len(self.jobs) >= self.size

    def empty(self) -> bool:
        return not self.jobs


class Scheduler:
    """
    A bounded queue of requests (`submit` raises `queue.Full` at once when it is full) and one thread
    that owns the model and answers them; subclasses decide how requests become model calls (`cycle`).
    A request given up (`drop`: its client left, or its time ran out) leaves the queue at once, and its
    rows leave every model call that has not run yet. `stop` lets the thread finish every accepted
    request that is not given up, then ends it.

    Parameters
    ----------
    engine : `Engine`
        The model.
    batch_size : `int`
        The most rows one model call takes.
    max_wait_ms : `float`
        How long a request may wait for others to fill a batch.
    queue_size : `int`
        The most requests waiting.
    metrics : `ServingMetrics`
        Where batch sizes, exit layers, queue depth and online agreement go.
    online : `OnlineThreshold`, optional
        Online mode: the threshold of requests without their own follows this controller.
    """

    def __init__(
        self,
        engine: Engine,
        batch_size: int,
        max_wait_ms: float,
        queue_size: int,
        metrics: ServingMetrics,
        online: OnlineThreshold | None = None,
    ) -> None:
        self.engine, self.batch_size, self.max_wait = engine, batch_size, max_wait_ms / 1000
        self.metrics, self.online = metrics, online
        self.queue = RequestQueue(queue_size)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="sledge-model", daemon=True)
        metrics.threshold.set(online.threshold if online is not None else engine.policy.value())

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> Future:
        """Queue a request; `queue.Full` at once if the queue is full."""
        self.queue.put_nowait(job)
        self.metrics.queue_depth.set(self.queue.qsize())
        return job.future

    def drop(self, job: Job, reason: str) -> bool:
        """
        Give `job` up (`reason`: `client_left`, `timeout` or `stopped`, counted): it leaves the queue
        and the model thread skips its rows. False if it was answered meanwhile (then it is not dropped).
        """
        if not job.future.cancel():
            return False
        self.queue.remove(job)
        self.metrics.queue_depth.set(self.queue.qsize())
        self.metrics.dropped.labels(reason=reason).inc()
        return True

    def stop(self) -> None:
        """Answer everything accepted, then end the model thread."""
        self.stopping.set()
        self.thread.join()

    def default_setting(self) -> float | None:
        """The setting of instances without their own: the online controller's, else the policy's."""
        return None if self.online is None else self.online.threshold

    def busy(self) -> bool:
        return False

    def _loop(self) -> None:
        while not (self.stopping.is_set() and self.queue.empty() and not self.busy()):
            self.cycle()

    def cycle(self) -> None:
        raise NotImplementedError

    def take(self, timeout: float) -> Job | None:
        """The oldest request waiting (None if none came within `timeout` seconds), marked started."""
        job = self.queue.get(timeout=timeout)
        if job is None:
            return None
        job.started = True
        self.metrics.queue_depth.set(self.queue.qsize())
        return job

    def settings_of(self, job: Job) -> list[float | None]:
        default = self.default_setting()
        return [default if setting is None else setting for setting in job.settings]

    def answer(self, job: Job, row: int, result: dict) -> None:
        job.results[row] = result
        self.metrics.exit_layer.observe(result["exit_layer"])
        if all(item is not None for item in job.results) and not job.future.done():
            job.future.set_result(job.results)

    def compare(self, early_label: int, last_label: int) -> None:
        """Online mode: one sampled instance's early answer against the last exit's."""
        self.online.record(early_label == last_label)
        self.metrics.agreement.set(self.online.agreement())
        self.metrics.threshold.set(self.online.threshold)

    @staticmethod
    def fail(jobs: list[Job], error: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(error)


def now() -> float:
    return time.perf_counter()
