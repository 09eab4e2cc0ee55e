"""gRPC ModelStreamInfer: one answer per request, in request order; an error answers its own request
on the stream and the stream goes on; admission control applies; the stream ends cleanly when the
client closes it, and a drain finishes the requests in flight."""
from __future__ import annotations

import asyncio
import queue
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcclient_aio
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from mlfleet.runtime import streaming
from mlfleet.runtime.errors import BadRequest
from mlfleet.runtime.process import RuntimeProcess

from helpers.runtime import reference_forward


def _inputs(batch: np.ndarray, client=grpcclient) -> list:
    tensor = client.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return [tensor]


def _batches(count: int, rows: int = 2, seed: int = 0) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.standard_normal((rows, 64)).astype(np.float32) for _ in range(count)]


class _Stream:
    """tritonclient's sync stream, its callback's (result, error) pairs collected in arrival order."""

    def __init__(self, url: str):
        self.client = grpcclient.InferenceServerClient(url)
        self.answers: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.answers.put((result, error)))

    def collect(self, count: int, timeout: float = 30.0) -> list[tuple]:
        return [self.answers.get(timeout=timeout) for _ in range(count)]

    def close(self) -> None:
        self.client.stop_stream()
        self.client.close()


# -- the stream's order and errors, without a process ------------------------------------------------
def test_answers_leave_in_request_order_even_when_later_requests_finish_first():
    async def infer(request, started_ns):
        await asyncio.sleep(0.05 if request.id == "slow" else 0)
        if request.id == "bad":
            raise BadRequest("input 'x': wrong")
        return pb.ModelInferResponse(id=request.id, model_name=request.model_name)

    async def requests():
        for request_id in ("slow", "bad", "fast"):
            yield pb.ModelInferRequest(id=request_id, model_name="m", model_version="3")

    async def scenario():
        return [answer async for answer in streaming.stream_infer(requests(), infer)]

    answers = asyncio.run(scenario())
    assert [a.infer_response.id for a in answers] == ["slow", "bad", "fast"]
    assert [a.error_message for a in answers] == ["", "input 'x': wrong", ""]
    assert answers[1].infer_response.model_name == "m" and answers[1].infer_response.model_version == "3"


def test_a_stream_runs_at_most_its_window_of_requests_at_once():
    running, most = 0, 0

    async def infer(request, started_ns):
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        return pb.ModelInferResponse(id=request.id)

    async def requests():
        for index in range(3 * streaming.STREAM_WINDOW):
            yield pb.ModelInferRequest(id=str(index))

    async def scenario():
        return [answer async for answer in streaming.stream_infer(requests(), infer)]

    answers = asyncio.run(scenario())
    assert [a.infer_response.id for a in answers] == [str(i) for i in range(3 * streaming.STREAM_WINDOW)]
    assert 1 < most <= streaming.STREAM_WINDOW


def test_cancelling_the_stream_cancels_the_requests_still_running():
    cancelled = []

    async def infer(request, started_ns):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(request.id)
            raise
        return pb.ModelInferResponse()

    async def requests():
        for index in range(3):
            yield pb.ModelInferRequest(id=str(index))
        await asyncio.sleep(60)  # the client keeps its side open

    async def scenario():
        async def consume():
            async for _ in streaming.stream_infer(requests(), infer):
                pass
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)  # let the cancelled requests run their handlers

    asyncio.run(scenario())
    assert sorted(cancelled) == ["0", "1", "2"]


# -- against the runtime -------------------------------------------------------------------------------
@pytest.mark.sandbox
def test_sync_stream_answers_every_request_in_order_with_the_models_outputs(runtime, example_repo):
    batches = _batches(40)
    stream = _Stream(runtime.grpc_url)
    try:
        for index, batch in enumerate(batches):
            stream.client.async_stream_infer("mlp", _inputs(batch), request_id=f"r{index}")
        answers = stream.collect(len(batches))
    finally:
        stream.close()
    assert [error for _, error in answers] == [None] * len(batches)
    assert [result.get_response().id for result, _ in answers] == [f"r{i}" for i in range(len(batches))]
    for (result, _), batch in zip(answers, batches, strict=True):
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), reference_forward(example_repo, "mlp", "2", batch),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.sandbox
def test_an_error_answers_its_own_request_and_the_stream_goes_on(runtime, example_repo):
    good = _batches(2)
    stream = _Stream(runtime.grpc_url)
    try:
        stream.client.async_stream_infer("mlp", _inputs(good[0]), request_id="first")
        stream.client.async_stream_infer("no-such-model", _inputs(good[0]), request_id="unknown")
        stream.client.async_stream_infer("mlp", _inputs(np.zeros((1, 63), np.float32)), request_id="bad-shape")
        stream.client.async_stream_infer("mlp", _inputs(good[1]), request_id="last")
        answers = stream.collect(4)
    finally:
        stream.close()
    (first, no_error), (_, unknown), (_, bad_shape), (last, still_no_error) = answers
    assert no_error is None and still_no_error is None
    assert first.get_response().id == "first" and last.get_response().id == "last"
    np.testing.assert_allclose(last.as_numpy("OUTPUT__0"), reference_forward(example_repo, "mlp", "2", good[1]),
                               rtol=1e-5, atol=1e-5)
    assert "no-such-model" in unknown.message()
    assert "INPUT__0" in bad_shape.message() and "63" in bad_shape.message()


@pytest.mark.sandbox
def test_an_error_carries_the_request_id_and_the_call_ends_ok_when_the_client_closes(runtime):
    """tritonclient hands a stream error to the callback without the response: read the wire."""
    good = pb.ModelInferRequest(model_name="mlp", id="ok")
    good.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 64])
    good.raw_input_contents.append(np.ones((1, 64), np.float32).tobytes())
    typed_and_raw = pb.ModelInferRequest()
    typed_and_raw.CopyFrom(good)
    typed_and_raw.id = "both-contents"
    typed_and_raw.inputs[0].contents.fp32_contents.extend([1.0] * 64)
    with grpc.insecure_channel(runtime.grpc_url) as channel:
        call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(
            iter([good, typed_and_raw, good]), timeout=30)
        answers = list(call)
        assert call.code() == grpc.StatusCode.OK
    assert [a.infer_response.id for a in answers] == ["ok", "both-contents", "ok"]
    assert [bool(a.error_message) for a in answers] == [False, True, False]
    assert "raw_input_contents" in answers[1].error_message
    assert answers[1].infer_response.model_name == "mlp"


@pytest.mark.sandbox
def test_aio_stream_infer_answers_in_order(runtime, example_repo):
    batches = _batches(16, seed=3)

    async def scenario():
        client = grpcclient_aio.InferenceServerClient(runtime.grpc_url)

        async def requests():
            for index, batch in enumerate(batches):
                yield {"model_name": "mlp", "inputs": _inputs(batch, grpcclient_aio), "request_id": str(index)}
            yield {"model_name": "mlp", "inputs": _inputs(np.zeros((1, 2), np.float32), grpcclient_aio),
                   "request_id": "bad"}
        try:
            return [answer async for answer in client.stream_infer(requests())]
        finally:
            await client.close()

    answers = asyncio.run(scenario())
    assert len(answers) == len(batches) + 1
    for index, ((result, error), batch) in enumerate(zip(answers, batches, strict=False)):
        assert error is None and result.get_response().id == str(index)
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"), reference_forward(example_repo, "mlp", "2", batch),
                                   rtol=1e-5, atol=1e-5)
    result, error = answers[-1]
    assert result is None and "INPUT__0" in error.message()


@pytest.mark.sandbox
def test_stream_requests_pass_admission_control(example_repo, manifest_key):
    """A stream's requests count against --max-queue-depth like ModelInfer calls: beyond it they are
    answered "overloaded" on the stream (the stream goes on), and the admitted ones are correct."""
    batches = _batches(48, rows=64, seed=5)
    with RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--max-queue-depth", "2"]) as runtime:
        stream = _Stream(runtime.grpc_url)
        try:
            for index, batch in enumerate(batches):
                stream.client.async_stream_infer("mlp-large", _inputs(batch), request_id=str(index))
            answers = stream.collect(len(batches), timeout=60)
            stream.client.async_stream_infer("mlp-large", _inputs(batches[0]), request_id="after")
            (after, after_error), = stream.collect(1)
        finally:
            stream.close()
        assert after_error is None and after.get_response().id == "after"
    shed = [index for index, (_, error) in enumerate(answers) if error is not None]
    assert shed, "48 full batches at once on a bound of 2: some must be shed"
    assert all("is overloaded" in answers[i][1].message() for i in shed)
    served = [(index, result) for index, (result, error) in enumerate(answers) if error is None]
    assert served and [result.get_response().id for _, result in served] == [str(i) for i, _ in served]
    for index, result in served:
        np.testing.assert_allclose(result.as_numpy("OUTPUT__0"),
                                   reference_forward(example_repo, "mlp-large", "2", batches[index]),
                                   rtol=1e-4, atol=1e-4)


@pytest.mark.sandbox
def test_sigterm_finishes_the_stream_requests_in_flight_within_the_grace_period(example_repo, manifest_key):
    batches = _batches(24, rows=64, seed=7)
    with RuntimeProcess(example_repo, manifest_public_key=manifest_key.public_key_path,
                        extra_args=["--grace-period", "10"]) as runtime:
        stream = _Stream(runtime.grpc_url)
        try:
            for index, batch in enumerate(batches):
                stream.client.async_stream_infer("mlp-large", _inputs(batch), request_id=str(index))
            time.sleep(0.05)  # read by the server: queued or running
            signalled = time.monotonic()
            runtime.terminate()
            answers = stream.collect(len(batches))
            answered = time.monotonic()  # the last answer
        finally:
            stream.close()
        returncode = runtime.process.wait(timeout=15)
        elapsed = time.monotonic() - signalled
    assert returncode == 0 and elapsed < 10
    assert [error for _, error in answers] == [None] * len(batches)
    assert [result.get_response().id for result, _ in answers] == [str(i) for i in range(len(batches))]
    np.testing.assert_allclose(answers[-1][0].as_numpy("OUTPUT__0"),
                               reference_forward(example_repo, "mlp-large", "2", batches[-1]), rtol=1e-4, atol=1e-4)
    assert answered - signalled > 0.1, "the drain had work: answers still came after the signal"
