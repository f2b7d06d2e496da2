"""Dynamic batching: gather requests up to a batch or a deadline, run the batched early-exit runner."""

import torch

from sledge.serving.scheduler import Scheduler, now


class DynamicScheduler(Scheduler):
    """
    Takes the oldest request, then more until `batch_size` rows are gathered or `max_wait_ms` has
    passed since, and runs them as one batch of the batched early-exit runner (rows leave it at their
    exits; the batch ends when its last row does). A failure fails that batch's requests only. A
    request given up while the batch was gathered is left out of it. In online mode the sampled rows of
    the batch are run again to the last exit, and their labels compared.
    """

    def cycle(self) -> None:
        first = self.take(timeout=0.05)
        if first is None:
            return
        jobs, rows, deadline = [first], len(first.rows), now() + self.max_wait
        while rows < self.batch_size and (left := deadline - now()) > 0:
            job = self.take(timeout=left)
            if job is None:
                break
            jobs.append(job)
            rows += len(job.rows)
        jobs = [job for job in jobs if not job.given_up()]
        if not jobs:
            return
        items = [(job, row) for job in jobs for row in range(len(job.rows))]
        settings = [setting for job in jobs for setting in self.settings_of(job)]
        try:
            result = self.engine.run([job.rows[row] for job, row in items], settings)
            shadows = self.shadow(items, result)
        except Exception as error:  # noqa: BLE001 (one batch fails, the server goes on)
            self.fail(jobs, error)
            return
        self.metrics.batch_size.observe(len(items))
        for position, (job, row) in enumerate(items):
            self.answer(
                job,
                row,
                self.engine.output(
                    int(result.exit_index[position]),
                    result.logits[position],
                    None if result.probs is None else result.probs[position],
                    None if result.certainty is None else result.certainty[position],
                    job.rows[row].truncated,
                ),
            )
        for early, last in shadows:
            self.compare(early, last)

    def shadow(self, items: list, result) -> list[tuple[int, int]]:
        """Online mode: (early label, last exit's label) of the sampled rows."""
        if self.online is None or result.probs is None:
            return []
        sampled = [position for position in range(len(items)) if self.online.sample()]
        if not sampled:
            return []
        self.metrics.shadow_rows.inc(len(sampled))
        full = self.engine.run([items[p][0].rows[items[p][1]] for p in sampled], [1.0] * len(sampled))
        early = result.probs[torch.tensor(sampled)].argmax(dim=-1).tolist()
        return list(zip(early, full.probs.argmax(dim=-1).tolist()))
