"""Fault injection for the reliability tests: an S3 endpoint that dies mid-transfer, and a
process that is killed at a chosen log line."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time

from tests.conftest import free_port


class CuttableProxy:
    """A TCP proxy in front of an S3 server that can kill the endpoint mid-transfer.

    Killing closes every open connection and stops listening, so clients see resets and then
    refused connections, exactly as when the server process dies; the store behind keeps its
    state, so a test can still look at what became visible under which key.
    """

    def __init__(self, upstream: str):
        self.upstream_url = upstream
        host, _, port = upstream.removeprefix("http://").partition(":")
        self.upstream = (host, int(port))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.killed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._trigger: tuple[bytes, int, int] | None = None
        self._seen = 0
        self._after = 0

    def start(self) -> CuttableProxy:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def kill_on(self, marker: bytes, occurrence: int = 1, after: int = 0) -> None:
        """Kill the endpoint once ``marker`` was sent ``occurrence`` times and ``after`` more
        request bytes went through (markers are matched within one read, which is enough for
        HTTP request lines)."""
        with self._lock:
            self._trigger = (marker, occurrence, after)
            self._seen, self._after = 0, 0
        self.killed.clear()

    def kill(self) -> None:
        with self._lock:
            self._trigger = None
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        if listener is not None:
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.killed.set()

    def restore(self) -> None:
        if self._listener is None:
            self.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # killed
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # killed meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, request: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if request and self._should_kill(chunk):
                    self.kill()
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _should_kill(self, chunk: bytes) -> bool:
        with self._lock:
            if self._trigger is None:
                return False
            marker, occurrence, after = self._trigger
            if self._seen < occurrence:
                self._seen += chunk.count(marker)
                return False
            self._after += len(chunk)
            return self._after >= after


def kill_at(proc: subprocess.Popen, lines: list[str], needles: list[str], timeout: float) -> str:
    """Read ``proc``'s stderr until every needle has appeared in order, then SIGKILL it.
    Returns the line that triggered the kill; ``lines`` collects everything read."""
    deadline = time.time() + timeout
    pending = list(needles)
    for line in proc.stderr:
        lines.append(line)
        if pending and pending[0] in line:
            pending.pop(0)
            if not pending:
                proc.kill()
                proc.wait()
                return line
        if time.time() > deadline:
            break
    proc.kill()
    proc.wait()
    raise AssertionError(f"never saw {pending} before the process ended:\n{''.join(lines[-20:])}")
