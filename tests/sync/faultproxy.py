"""A fault-injecting TCP proxy on loopback: passes, answers 500, hangs, or cuts connections."""

from __future__ import annotations

import random
import socket
import threading

MODES = ("pass", "http500", "hang", "cut_request", "cut_response")


class FaultProxy:
    """Listen on 127.0.0.1:<port>; per connection pick a mode by `weights` (seeded)."""

    def __init__(self, upstream_port: int, weights: dict[str, float], seed: int = 7) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.weights = weights
        self.random = random.Random(seed)
        self.counts = dict.fromkeys(MODES, 0)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _pick(self) -> str:
        modes = list(self.weights)
        return self.random.choices(modes, [self.weights[m] for m in modes])[0]

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            mode = self._pick()
            self.counts[mode] += 1
            threading.Thread(target=self._handle, args=(client, mode), daemon=True).start()

    def _handle(self, client: socket.socket, mode: str) -> None:
        client.settimeout(5)
        try:
            if mode == "http500":
                client.recv(65536)
                client.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                               b"Connection: close\r\n\r\n")
            elif mode == "hang":
                client.recv(65536)
                self._stop.wait(3)  # longer than the agent's read timeout
            elif mode == "cut_request":
                client.recv(200)
            else:
                self._relay(client, cut=mode == "cut_response")
        except OSError:
            pass
        finally:
            client.close()

    def _relay(self, client: socket.socket, cut: bool) -> None:
        """Forward one request/response; with `cut`, drop the response after a few bytes
        (the centre has stored the batch, the box never sees the receipt)."""
        with socket.create_connection(self.upstream, timeout=5) as upstream:
            done = threading.Event()

            def upward() -> None:
                try:
                    while chunk := client.recv(65536):
                        upstream.sendall(chunk)
                except OSError:
                    pass
                done.set()

            threading.Thread(target=upward, daemon=True).start()
            sent = 0
            while chunk := upstream.recv(65536):
                if cut:
                    client.sendall(chunk[:20])
                    return
                client.sendall(chunk)
                sent += len(chunk)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(2)
