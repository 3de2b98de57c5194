"""One listening socket per worker (`web.workers`): the sockets share a port, the kernel spreads
connections over all of them, and a port another process listens on is refused as it would be
without SO_REUSEPORT."""

from __future__ import annotations

import select
import socket

import pytest

from smallboat.errors import SmallboatError
from smallboat.web.workers import reuse_port_sockets


def test_each_socket_of_the_group_takes_a_share_of_the_connections() -> None:
    sockets = reuse_port_sockets("127.0.0.1", 0, 3)
    clients: list[socket.socket] = []
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1, ports
        for s in sockets:
            s.listen(128)
            s.setblocking(False)
        (port,) = ports
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(90)]
        accepted = [0] * len(sockets)
        while sum(accepted) < len(clients):
            ready, _, _ = select.select(sockets, [], [], 5.0)
            assert ready, f"only {sum(accepted)} of {len(clients)} connections arrived"
            for s in ready:
                conn, _ = s.accept()
                conn.close()
                accepted[sockets.index(s)] += 1
        # a hash of the addresses: not exact thirds, but none left out (at random: P < 1e-6)
        assert min(accepted) >= 10, accepted
    finally:
        for c in clients:
            c.close()
        for s in sockets:
            s.close()


def test_a_port_another_process_listens_on_is_refused() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(SmallboatError, match=rf"cannot listen on 127.0.0.1:{port}: .*in use"):
            reuse_port_sockets("127.0.0.1", port, 2)
