"""The sandbox's HTTP servers on loopback: threaded, and quiet when a client goes away mid-answer.

socketserver prints a traceback for every request whose client closed its connection before the
answer was written (a probe that timed out, a drill that stopped): noise on the user's terminal,
not a fault of the sandbox. Any other error is still reported."""
from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer

CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class LoopbackServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], CLIENT_GONE):
            return
        super().handle_error(request, client_address)
