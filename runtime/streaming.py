"""gRPC ModelStreamInfer: a bidirectional stream of ModelInferRequest answered by
ModelStreamInferResponse, one per request and in the order the requests came.

Each request goes through `DataPlane.infer` exactly as a ModelInfer call does (admission control,
checks, batching, statistics). Requests of one stream run concurrently, up to `STREAM_WINDOW` at a
time, so a client that streams many requests gets them batched; the answers still leave in request
order. An error answers its own request with `error_message` (the request's id and model in
`infer_response`) and the stream goes on; only the client closing its side, or the server
cancelling the call at the end of a drain, ends the stream."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

from tritonclient.grpc import service_pb2 as pb

from .errors import ServingError

log = logging.getLogger("mlfleet.runtime")

# Requests of one stream decoded and running at once. Beyond it the stream stops reading, so gRPC's
# flow control holds the client back instead of the admission bound shedding its requests.
STREAM_WINDOW = 64

# `infer(request, started_ns)` answers one ModelInferRequest (ModelInfer's path through the data plane)
Infer = Callable[[pb.ModelInferRequest, int], Awaitable[pb.ModelInferResponse]]


def error_response(request: pb.ModelInferRequest, message: str) -> pb.ModelStreamInferResponse:
    """The answer to a request that failed: its id and model, so the client can tell which one."""
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(model_name=request.model_name, model_version=request.model_version,
                                             id=request.id))


async def _answer(infer: Infer, request: pb.ModelInferRequest, started_ns: int) -> pb.ModelStreamInferResponse:
    try:
        return pb.ModelStreamInferResponse(infer_response=await infer(request, started_ns))
    except ServingError as exc:
        return error_response(request, exc.message)
    except Exception:  # a bug: answer this request and keep the stream, as for any other error
        log.exception("stream request for model %r failed", request.model_name)
        return error_response(request, f"internal error serving model {request.model_name!r}")


async def stream_infer(requests: AsyncIterable[pb.ModelInferRequest],
                       infer: Infer) -> AsyncIterator[pb.ModelStreamInferResponse]:
    """Answer every request of `requests` in order; ends once the client has closed its side and
    every answer is sent. Cancelling it (the call ended) cancels the requests still running."""
    window = asyncio.Semaphore(STREAM_WINDOW)
    # answers in request order; None marks the end of the client's side (or a broken read)
    pending: asyncio.Queue[asyncio.Task[pb.ModelStreamInferResponse] | None] = asyncio.Queue()

    async def read() -> None:
        incoming = aiter(requests)
        try:
            while True:
                await window.acquire()
                try:
                    request = await anext(incoming)
                except StopAsyncIteration:
                    return
                started_ns = time.perf_counter_ns()  # as ModelInfer: the request's whole duration counts
                pending.put_nowait(asyncio.ensure_future(_answer(infer, request, started_ns)))
        finally:
            pending.put_nowait(None)

    reader = asyncio.create_task(read())
    try:
        while (answer := await pending.get()) is not None:
            yield await answer
            window.release()
        await reader  # the client's side ended: a broken read ends the call with its error
    finally:
        reader.cancel()
        while not pending.empty():  # the call ended early (cancelled, or the client went away)
            task = pending.get_nowait()
            if task is not None:
                task.cancel()
