"""support.servers.serve: a test server that exits before it listens is started again on
another port, or reported with its output, never waited for until the timeout."""

from __future__ import annotations

import socket
import sys

import pytest

from support.servers import ServerUnavailable, serve

LISTEN = ("import socket, sys, time\n"
          "s = socket.socket()\n"
          "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
          "s.listen()\n"
          "time.sleep(60)\n")


def test_a_server_whose_port_was_taken_starts_again_on_another() -> None:
    holders: list[socket.socket] = []
    ports: list[int] = []

    def command(port: int) -> list[str]:
        ports.append(port)
        if len(ports) == 1:  # something connected from this port: the server cannot bind it
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            client.bind(("127.0.0.1", port))
            client.connect(listener.getsockname())
            holders.extend([listener, client])
        return [sys.executable, "-c", LISTEN, str(port)]

    process, port = serve(command)
    try:
        assert len(ports) == 2 and port == ports[1] != ports[0]
        with socket.create_connection(("127.0.0.1", port)):
            pass
    finally:
        process.terminate()
        process.wait(10)
        for sock in holders:
            sock.close()


def test_a_server_that_cannot_start_is_reported_with_what_it_said() -> None:
    starts = 0

    def command(port: int) -> list[str]:
        nonlocal starts
        starts += 1
        return [sys.executable, "-c", "import sys; print('no app here'); sys.exit(3)"]

    with pytest.raises(ServerUnavailable, match=r"(?s)exited with 3.*no app here"):
        serve(command, timeout=600)
    assert starts == 3
