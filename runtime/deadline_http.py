"""HTTP connections bounded by one deadline, whatever the peer does.

A socket timeout alone bounds each operation, not the exchange: a peer that sends one byte
just before each timeout holds the caller for ever. Here every step waits at most until the
deadline: name lookup (``addresses``, which has no timeout of its own), connect (each address
in turn), the TLS handshake (Python bounds the whole handshake by the socket's timeout), and
then every send and receive of the request and response (``DeadlineSocket``), so the status
line, headers, body and chunked bodies are all covered. Past the deadline the operation
raises ``TimeoutError``.

With an ``egress`` policy (``marketplace.egress``) every address the name resolves to is
checked before any connection is made, and the connection goes to a checked address: a name
that resolves to a refused address raises ``EgressRefused`` before a byte is sent, and DNS
answering differently a moment later (rebinding) cannot change where it goes. TLS still
verifies, and ``Host`` still names, the host as written.
"""
from __future__ import annotations

import functools
import http.client
import io
import ipaddress
import socket
import ssl
import threading
import time


class DeadlineSocket:
    """A connected socket whose every send and receive waits at most until ``deadline``
    (``TimeoutError`` after it). A per-operation timeout alone restarts with each byte,
    so a peer that drips one byte at a time would hold the caller for ever."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline
        # Like socket.makefile: the connection closes its socket while the response still
        # reads from it, so the socket closes when the last of them lets go.
        self._users = 1

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the device did not finish in time")
        self._sock.settimeout(left)

    def sendall(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            self._arm()
            view = view[self._sock.send(view[:65536]):]

    def recv_into(self, buffer) -> int:
        self._arm()
        return self._sock.recv_into(buffer, len(buffer))

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("a DeadlineSocket only reads")
        self._users += 1
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._sock.close()

    def __getattr__(self, name):  # setsockopt, fileno, … of the socket itself
        return getattr(self._sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: DeadlineSocket):
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.close()
        super().close()


def addresses(host: str, port: int, deadline: float) -> list:
    """getaddrinfo bounded by ``deadline``: it has no timeout of its own, so a slow resolver
    is waited for in a daemon thread that is left behind if it does not answer in time."""
    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)  # a literal: no lookup
    except ValueError:
        pass
    answer: list = []
    done = threading.Event()

    def lookup():
        try:
            answer.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            answer.append(exc)
        done.set()

    threading.Thread(target=lookup, name="junction-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"looking up {host} took too long")
    if isinstance(answer[0], OSError):
        raise answer[0]
    return answer[0]


def open_socket(host: str, port: int, deadline: float, egress=None) -> socket.socket:
    """A TCP connection to ``host:port`` made before ``deadline`` (each address in turn).
    With ``egress``, all addresses are checked first and any refusal stops the connection."""
    error: OSError = OSError(f"{host} has no address")
    found = addresses(host, port, deadline)
    if egress is not None:
        for *_rest, address in found:
            egress.check(address[0], port)
    for family, kind, proto, _name, address in found:
        sock = socket.socket(family, kind, proto)
        try:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connecting to {host} took too long")
            sock.settimeout(left)
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class DeadlineHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection whose socket is a ``DeadlineSocket``: ``deadline`` bounds the
    whole exchange, whatever the peer does."""

    def __init__(self, host: str, port: int | None, *, deadline: float, egress=None):
        super().__init__(host, port)
        self.deadline = deadline
        self.egress = egress

    def connect(self) -> None:
        self.sock = DeadlineSocket(open_socket(self.host, self.port, self.deadline, self.egress), self.deadline)


class DeadlineHTTPSConnection(DeadlineHTTPConnection):
    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        sock = open_socket(self.host, self.port, self.deadline, self.egress)
        try:
            sock = _tls_context().wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connecting took too long")
            sock.settimeout(left)
            sock.do_handshake()  # the timeout bounds the whole handshake, not each step
        except BaseException:
            sock.close()
            raise
        self.sock = DeadlineSocket(sock, self.deadline)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The default context (system CAs, hostname check), loaded once per process."""
    return ssl.create_default_context()
