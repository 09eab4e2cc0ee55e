"""The floor: the simplest fast server a competent engineer would write for one TorchScript model's
KServe v2 binary infer (bench peer; runs in mlfleet's own virtualenv). A raw ASGI app under
uvicorn (uvloop, httptools) and a send-what-is-queued batcher: when the model is free, take every
queued request (up to the batch bound), run one forward in a worker thread, answer each. No spec
checks, statistics, admission control or health beyond "ready": what mlfleet adds costs what it
costs against this. Usage: asgi_floor.py MODEL_NAME MODEL_PT HTTP_PORT"""
import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import uvicorn

MAX_BATCH = 64

name, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
module = torch.jit.load(path).eval()
infer_path = f"/v2/models/{name}/infer".encode()


def forward(batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


class QueueBatcher:
    """One forward at a time; each takes everything queued since the last one."""

    def __init__(self):
        self.queue: list[tuple[np.ndarray, asyncio.Future]] = []
        self.wakeup = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1)
        self.task = asyncio.get_running_loop().create_task(self.run())

    async def infer(self, rows: np.ndarray) -> np.ndarray:
        future = asyncio.get_running_loop().create_future()
        self.queue.append((rows, future))
        self.wakeup.set()
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.queue:
                batch, self.queue = self.queue[:MAX_BATCH], self.queue[MAX_BATCH:]
                inputs = np.concatenate([rows for rows, _ in batch])
                try:
                    outputs = await loop.run_in_executor(self.executor, forward, inputs)
                except Exception as exc:  # noqa: BLE001 - every waiter hears about a failed batch
                    for _, future in batch:
                        future.set_exception(exc)
                    continue
                start = 0
                for rows, future in batch:
                    future.set_result(outputs[start:start + len(rows)])
                    start += len(rows)


batcher: QueueBatcher | None = None


async def read_body(receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    while message.get("more_body"):
        message = await receive()
        body += message.get("body", b"")
    return body


async def respond(send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    global batcher
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                batcher = QueueBatcher()
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["raw_path"] != infer_path:
        await respond(send, 200 if scope["path"] == "/v2/health/ready" else 404, [], b"")
        return
    body = await read_body(receive)
    header_length = next((int(v) for k, v in scope["headers"] if k == b"inference-header-content-length"), None)
    if header_length is None:
        await respond(send, 400, [], b'{"error": "binary requests only"}')
        return
    header = json.loads(body[:header_length])
    spec = header["inputs"][0]
    rows = np.frombuffer(body, dtype=np.float32, offset=header_length).reshape(spec["shape"])
    output = await batcher.infer(rows)
    payload = output.tobytes()
    response = json.dumps({"model_name": name, "outputs": [{
        "name": "OUTPUT__0", "datatype": "FP32", "shape": list(output.shape),
        "parameters": {"binary_data_size": len(payload)}}]}).encode()
    await respond(send, 200, [(b"content-type", b"application/octet-stream"),
                              (b"inference-header-content-length", str(len(response)).encode())],
                  response + payload)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False)
