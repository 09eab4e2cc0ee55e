"""Per-model request queue and dynamic batcher.

One batch executes at a time per loaded model, in a dedicated worker thread (torch releases
the GIL, so the event loop keeps answering health and parsing requests meanwhile). By default
the batcher sends whatever is queued when the model becomes free; with
``max_queue_delay_microseconds`` it waits up to that long after the oldest request for a
fuller batch. Only requests of the same per-request shape (every input's shape after the batch
dimension) run together: with variable dims, requests of other shapes keep their place in the queue
for a later batch."""
from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .errors import ServingError, Unavailable
from .metrics import ModelStats
from .torch_model import TorchModel


class _Pending:
    __slots__ = ("inputs", "rows", "future", "enqueued_ns", "shape")

    def __init__(self, inputs: list[np.ndarray], rows: int, future: asyncio.Future):
        self.inputs, self.rows, self.future = inputs, rows, future
        self.enqueued_ns = time.perf_counter_ns()
        # requests concatenate along the batch dimension only when everything after it matches
        self.shape = tuple(a.shape[1:] for a in inputs)


class Batcher:
    def __init__(self, model: TorchModel, stats: ModelStats):
        spec = model.spec
        self.model = model
        self._stats = stats
        self._max_rows = spec.max_batch_size if spec.dynamic_batching else 0  # 0: one request per run
        self._delay_ns = spec.max_queue_delay_us * 1000 if spec.dynamic_batching else 0
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup: asyncio.Future | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{spec.name}")
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name=f"batcher-{spec.name}-{model.version}")

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def infer(self, inputs: list[np.ndarray], rows: int) -> list[np.ndarray]:
        if self._closing:
            raise Unavailable(f"model {self.model.spec.name!r} version {self.model.version} is unloading")
        future = self._loop.create_future()
        self._queue.append(_Pending(inputs, rows, future))
        self._queued_rows += rows
        self._stats.pending += 1
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _sleep_until_woken(self, timeout_ns: int | None = None) -> None:
        self._wakeup = self._loop.create_future()
        timer = None if timeout_ns is None else self._loop.call_later(timeout_ns / 1e9, self._wake)
        try:
            await self._wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _take_batch(self) -> list[_Pending]:
        """The oldest request and, in queue order, the later ones of its shape that fit."""
        queue = self._queue
        batch = [queue.popleft()]
        rows, shape = batch[0].rows, batch[0].shape
        while queue and queue[0].shape == shape and rows + queue[0].rows <= self._max_rows:
            item = queue.popleft()
            batch.append(item)
            rows += item.rows
        if queue and queue[0].shape != shape and rows < self._max_rows:
            # mixed shapes: take later requests of this shape (first come first, up to the first
            # that does not fit); the others keep their order
            kept: deque[_Pending] = deque()
            taking = True
            for item in queue:
                if taking and item.shape == shape:
                    if rows + item.rows <= self._max_rows:
                        batch.append(item)
                        rows += item.rows
                        continue
                    taking = False
                kept.append(item)
            self._queue = kept
        self._queued_rows -= rows
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                await self._sleep_until_woken()
                continue
            if self._delay_ns:
                deadline = self._queue[0].enqueued_ns + self._delay_ns
                while self._queued_rows < self._max_rows and (left := deadline - time.perf_counter_ns()) > 0:
                    await self._sleep_until_woken(left)
            batch = self._take_batch()
            await self._execute(batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        started = time.perf_counter_ns()
        stats = self._stats
        try:
            results = await self._loop.run_in_executor(self._executor, self.model.execute, [p.inputs for p in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about a failed batch
            error = exc if isinstance(exc, ServingError) else ServingError(f"model execution failed: {exc}")
            results = None
        timings = self.model.timings  # the worker is idle again: these are this batch's
        if results is not None:
            stats.record_execution(sum(p.rows for p in batch), timings)
        for index, pending in enumerate(batch):
            stats.pending -= 1
            if pending.future.done():  # the client went away
                continue
            if results is None:
                pending.future.set_exception(error)
            else:
                stats.record_computed(pending.rows, started - pending.enqueued_ns, timings)
                pending.future.set_result(results[index])

    async def close(self) -> None:
        """Finish everything already queued, then stop the worker."""
        self._closing = True
        self._wake()
        await self._task
        self._executor.shutdown(wait=True)
