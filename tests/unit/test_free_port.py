"""runtime.processes.free_port: ports that no other program is handed while the caller binds."""

from __future__ import annotations

import collections
import socket

import pytest

from runtime import processes
from runtime.processes import free_port


def _ephemeral_low() -> int:
    low = processes._ephemeral_low()
    if low is None:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range here")
    return low


def test_ports_come_from_below_the_range_the_kernel_hands_out() -> None:
    # a port from the ephemeral range can be taken by any outgoing connection or "any port"
    # bind (the dev server's internal services) before the caller binds it
    low = _ephemeral_low()
    ports = [free_port() for _ in range(200)]
    assert all(1024 <= port < low for port in ports)
    for port in ports[:20]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # free, as promised


def test_ports_chosen_before_any_is_bound_are_all_different() -> None:
    _ephemeral_low()
    ports = [free_port() for _ in range(1000)]
    assert len(set(ports)) == len(ports)


def test_a_port_in_use_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    # a window of 16 ports under the range, all but two of them held: those two are chosen
    low = _ephemeral_low()
    monkeypatch.setattr(processes, "_FREE_PORTS_BELOW", 16)
    monkeypatch.setattr(processes, "_handed_out", collections.deque(maxlen=1024))
    held: list[socket.socket] = []
    free: list[int] = []
    try:
        for port in range(low - 16, low):
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # held by another program already
                sock.close()
                continue
            held.append(sock)
        if len(held) < 2:
            pytest.skip("the ports under the ephemeral range are taken here")
        for sock in held[-2:]:
            free.append(sock.getsockname()[1])
            sock.close()
        del held[-2:]
        assert {free_port(), free_port()} == set(free)
    finally:
        for sock in held:
            sock.close()
