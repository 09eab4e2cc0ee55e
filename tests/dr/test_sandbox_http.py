"""The sandbox's HTTP servers stay quiet when a client leaves before its answer is written, and
still report every other error."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler

from mlfleet.dr.sandbox.http_server import LoopbackServer


def _serve(handler) -> LoopbackServer:
    server = LoopbackServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_client_gone_mid_answer_prints_nothing_and_other_errors_are_reported(capsys):
    answered = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/fail":
                answered.set()
                raise ValueError("a real fault")
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(2000):  # far more than the client reads before it leaves
                    self.wfile.write(b"x" * 65536)
            finally:
                answered.set()

    server = _serve(Handler)
    try:
        with socket.create_connection(server.server_address) as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(1024)
        assert answered.wait(10)
        server.shutdown()
        assert capsys.readouterr().err == ""

        server = _serve(Handler)
        answered.clear()
        with socket.create_connection(server.server_address) as client:
            client.sendall(b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(1024)
        assert answered.wait(10)
        server.shutdown()
        assert "ValueError: a real fault" in capsys.readouterr().err
    finally:
        server.server_close()
