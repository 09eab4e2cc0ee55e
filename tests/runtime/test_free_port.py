"""free_port hands out ports a restarting server can count on keeping (the registry database's
restart once failed with "could not create any TCP/IP sockets": an outgoing connection had
taken its port, which lay in the kernel's ephemeral range, while it was down)."""
from __future__ import annotations

import socket

from mlfleet.runtime.process import ephemeral_port_range, free_port


def test_ports_lie_outside_the_range_the_kernel_gives_outgoing_connections():
    low, high = ephemeral_port_range()
    ports = [free_port() for _ in range(200)]
    assert all(not low <= port <= high for port in ports)


def test_no_port_is_handed_out_twice_and_each_is_bindable_when_handed_out():
    ports = []
    for _ in range(300):
        port = free_port()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # raises if it were taken
        ports.append(port)
    assert len(set(ports)) == len(ports)


def test_a_port_in_use_is_passed_over(monkeypatch):
    import mlfleet.runtime.process as process

    low, _ = ephemeral_port_range()
    taken, next_one = low - 7, low - 5  # outside the range, as free_port draws them
    candidates = iter([taken, next_one])
    monkeypatch.setattr(process.random, "randint", lambda first, last: next(candidates))
    monkeypatch.setattr(process.random, "choice", lambda ranges: ranges[0])
    with socket.socket() as someone_else:
        someone_else.bind(("127.0.0.1", taken))
        someone_else.listen()
        assert free_port() == next_one
