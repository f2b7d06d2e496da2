"""Layer-level continuous batching: requests join the rows in flight at once; layers are shared."""

from sledge.nn import LayerBatcher
from sledge.serving.scheduler import Job, Scheduler

DEADLINE_MS = 100.0  # the server's default: see `LayerBatcher` and the README's serving results
# The server's default: a group passed over once runs next, so in effect the oldest rows' layer runs
# next (with the rows waiting there). On these 2 CPU cores it had a lower p99 than letting groups wait
# to catch up from 1x the standard model's saturation load up (README's serving results).
MAX_SKIPS = 1


class ContinuousScheduler(Scheduler):
    """
    Feeds `sledge.nn.LayerBatcher`: every cycle, the requests that arrived are embedded together and
    join the rows in flight (as long as fewer than 4 x `batch_size` rows are), then ONE layer runs for
    up to `batch_size` rows that need that same layer, whichever requests they came from (when more
    wait, the oldest row and the rows nearest its length, so that calls carry little padding; the layer
    with the most rows waiting, unless a group was passed over `max_skips` times, by default once, so
    that in effect the oldest group's layer runs next; with `deadline_ms` > 0 and at most `batch_size`
    rows in flight, counting only the groups in flight that long when there are any: see
    `LayerBatcher`). A request is answered as soon as its last row leaves; a new request
    never waits for an older batch to finish; the rows of a request given up leave before the next
    step. A failure in a step fails the requests whose rows were in flight. In online mode the sampled rows
    also run, as shadow rows at threshold 1, to the last exit.
    """

    def __init__(
        self, *args, deadline_ms: float = DEADLINE_MS, max_skips: int | None = MAX_SKIPS, **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batcher = LayerBatcher(
            self.engine.core, self.engine.policy, max_rows=self.batch_size, max_skips=max_skips,
            deadline_ms=deadline_ms,
        )
        self.in_flight: dict[int, Job] = {}
        self.pending_shadow: dict[tuple[int, int], int] = {}  # (job, row) -> last exit's label

    def busy(self) -> bool:
        return len(self.batcher) > 0

    def cycle(self) -> None:
        jobs, rows = [], len(self.batcher)
        while rows < 4 * self.batch_size:
            job = self.take(timeout=0.0 if rows else 0.05)
            if job is None:
                break
            jobs.append(job)
            rows += len(job.rows)
        jobs = [job for job in jobs if not job.given_up()]
        if jobs:
            self.admit(jobs)
        self.forget_given_up()
        if not len(self.batcher):
            return
        try:
            finished = self.batcher.step()
        except Exception as error:  # noqa: BLE001 (the rows in flight fail, the server goes on)
            self.fail(list(self.in_flight.values()), error)
            self.in_flight.clear()
            self.batcher.clear()
            return
        if self.batcher.last_group:
            self.metrics.batch_size.observe(self.batcher.last_group)
        for item in finished:
            kind, job_id, row = item.key
            job = self.in_flight.get(job_id)
            if job is None:
                continue
            label = None if item.probs is None else int(item.probs.argmax())
            if kind == "shadow":
                self.settle_shadow(job, row, last=label)
                continue
            self.answer(
                job,
                row,
                self.engine.output(
                    item.exit_index, item.logits, item.probs, item.certainty, job.rows[row].truncated
                ),
            )
            if self.online is not None and label is not None:
                self.settle_shadow(job, row, early=label)
            if job.future.done() and not any(key[0] == id(job) for key in self.pending_shadow):
                self.in_flight.pop(job_id, None)

    def forget_given_up(self) -> None:
        """The rows in flight of requests given up leave, with their shadow rows."""
        gone = {job_id for job_id, job in self.in_flight.items() if job.given_up()}
        if not gone:
            return
        self.batcher.discard(lambda key: key[1] in gone)
        for job_id in gone:
            del self.in_flight[job_id]
        self.pending_shadow = {key: label for key, label in self.pending_shadow.items() if key[0] not in gone}

    def admit(self, jobs: list[Job]) -> None:
        """The requests that arrived join as one group (one embedding call), their shadow rows as another."""
        for job in jobs:
            self.in_flight[id(job)] = job
        keys = [("answer", id(job), row) for job in jobs for row in range(len(job.rows))]
        ids, mask, types = self.engine.batch([encoded for job in jobs for encoded in job.rows])
        settings = [setting for job in jobs for setting in self.settings_of(job)]
        self.batcher.add(keys, ids, mask, types, settings=settings)
        if self.online is None or self.engine.labels is None:
            return
        sampled = [(job, row) for job in jobs for row in range(len(job.rows)) if self.online.sample()]
        if sampled:
            self.metrics.shadow_rows.inc(len(sampled))
            ids, mask, types = self.engine.batch([job.rows[row] for job, row in sampled])
            keys = [("shadow", id(job), row) for job, row in sampled]
            self.batcher.add(keys, ids, mask, types, settings=[1.0] * len(sampled))
            for job, row in sampled:
                self.pending_shadow[(id(job), row)] = -1

    def settle_shadow(self, job: Job, row: int, early: int | None = None, last: int | None = None) -> None:
        """Pair a sampled row's early answer with its shadow's last-exit answer, whichever comes first."""
        key = (id(job), row)
        if key not in self.pending_shadow:
            return
        if last is not None:
            if row in job.early:
                self.compare(job.early.pop(row), last)
                del self.pending_shadow[key]
            else:
                self.pending_shadow[key] = last
        elif early is not None:
            if self.pending_shadow[key] >= 0:
                self.compare(early, self.pending_shadow.pop(key))
            else:
                job.early[row] = early
        if job.future.done() and not any(k[0] == id(job) for k in self.pending_shadow):
            self.in_flight.pop(id(job), None)
