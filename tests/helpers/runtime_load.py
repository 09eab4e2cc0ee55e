"""A small closed-loop load generator over real sockets for the runtime tests."""
from __future__ import annotations

import http.client
import json
import threading
import time

import numpy as np


def binary_infer_body(model_rows: int = 1, width: int = 64) -> tuple[bytes, dict]:
    batch = np.full((model_rows, width), 0.5, np.float32)
    header = json.dumps({"inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": list(batch.shape),
                                     "parameters": {"binary_data_size": batch.nbytes}}],
                         "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}]}).encode()
    return header + batch.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


class LoadGenerator:
    """`clients` threads, each with a keep-alive connection, POSTing until stop() is called.
    Records every request it began: its status, or the exception if no response came."""

    def __init__(self, url: str, model: str, clients: int, rows: int = 1):
        self._host, port = url.removeprefix("http://").split(":")
        self._port = int(port)
        self._path = f"/v2/models/{model}/infer"
        self._body, self._headers = binary_infer_body(rows)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.statuses: list[int] = []
        self.completed_at: list[float] = []  # time.monotonic() of each response
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> "LoadGenerator":
        for thread in self._threads:
            thread.start()
        return self

    def stop_issuing(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def _client(self) -> None:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=30)
        while not self._stop.is_set():
            try:
                connection.request("POST", self._path, body=self._body, headers=self._headers)
                response = connection.getresponse()
                response.read()
                with self._lock:
                    self.statuses.append(response.status)
                    self.completed_at.append(time.monotonic())
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                return
        connection.close()
