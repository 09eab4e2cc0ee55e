"""The dynamic batcher, in process: concatenated batches give each request exactly its own rows
of a direct forward, never exceed max_batch_size, and honour the queue-delay window."""
from __future__ import annotations

import asyncio

import numpy as np
import torch

from mlfleet.runtime.batcher import Batcher
from mlfleet.runtime.examples import build_mlp, config_pbtxt
from mlfleet.runtime.metrics import ModelStats
from mlfleet.runtime.model_spec import parse_model_config
from mlfleet.runtime.torch_model import TorchModel


def _model(delay_us: int, max_batch: int = 8) -> tuple[TorchModel, torch.jit.ScriptModule]:
    module = build_mlp((64, 32, 10), seed=11)
    text = config_pbtxt("m", (64, 32, 10), delay_us).replace("max_batch_size: 64", f"max_batch_size: {max_batch}")
    spec = parse_model_config(text, "m")
    return TorchModel(spec, "1", module, torch.device("cpu")), module


def test_concurrent_requests_are_batched_and_split_correctly():
    model, module = _model(delay_us=0)
    rng = np.random.default_rng(5)
    requests = [rng.standard_normal((int(rows), 64), dtype=np.float32) for rows in rng.integers(1, 5, size=40)]
    stats = ModelStats("m", "1")

    async def scenario():
        batcher = Batcher(model, stats)
        results = await asyncio.gather(*(batcher.infer([r], r.shape[0]) for r in requests))
        await batcher.close()
        return results

    results = asyncio.run(scenario())
    for request, (output,) in zip(requests, results, strict=True):
        with torch.inference_mode():
            np.testing.assert_allclose(output, module(torch.from_numpy(request)).numpy(), rtol=1e-5, atol=1e-6)
    rows = sum(r.shape[0] for r in requests)
    assert stats.inferences == rows and stats.pending == 0
    # 40 requests arrived at once: batches of up to 8 rows, so far fewer executions than requests
    assert rows / 8 <= stats.executions < len(requests)


def test_queue_delay_window_collects_staggered_requests():
    model, _ = _model(delay_us=200_000)
    stats = ModelStats("m", "1")

    async def scenario():
        batcher = Batcher(model, stats)

        async def late(delay_s):
            await asyncio.sleep(delay_s)
            return await batcher.infer([np.ones((1, 64), np.float32)], 1)

        await asyncio.gather(*(late(0.01 * i) for i in range(4)))
        await batcher.close()

    asyncio.run(scenario())
    assert stats.executions == 1 and stats.inferences == 4


def test_without_a_window_an_idle_model_runs_at_once():
    model, _ = _model(delay_us=0)
    stats = ModelStats("m", "1")

    async def scenario():
        batcher = Batcher(model, stats)
        for _ in range(3):
            await batcher.infer([np.ones((1, 64), np.float32)], 1)
        await batcher.close()

    asyncio.run(scenario())
    assert stats.executions == 3


def test_close_finishes_queued_requests():
    model, _ = _model(delay_us=0, max_batch=1)
    stats = ModelStats("m", "1")

    async def scenario():
        batcher = Batcher(model, stats)
        pending = [asyncio.ensure_future(batcher.infer([np.ones((1, 64), np.float32)], 1)) for _ in range(10)]
        await asyncio.sleep(0)
        await batcher.close()
        return [p.result()[0].shape for p in pending]

    assert asyncio.run(scenario()) == [(1, 10)] * 10
