"""Checks of a Dask scheduler address before a sweep submits anything to it.

Dask's own client, given the wrong address, waits forever (a server that never answers), or
reads a web server's reply as the length of a message and runs out of memory (the dashboard's
HTTP port). Each check here fails with one line that says what is at the address and what
to give instead:

* `check_address`: the address's form (scheme, host, port), without a connection;
* `probe`: something listens there, and for tcp:// it greets as a Dask scheduler does (a
  Dask server sends its handshake first, as soon as it accepts a connection).

Only the standard library: nothing here imports Dask.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from dataclasses import dataclass

#: The schemes Dask's comms serve (distributed.comm.registry), and what the user is told.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
WORKING = "tcp://HOST:PORT (or tls://, ws://, wss://, ucx://)"
#: The port `dask scheduler` listens on by default, and its dashboard's.
DEFAULT_PORT, DASHBOARD_PORT = 8786, 8787
#: Seconds to connect, and to wait for the scheduler's greeting once connected.
CONNECT_TIMEOUT = 5.0
GREETING_TIMEOUT = 5.0
#: A Dask handshake is a few hundred bytes; more than this is not one.
GREETING_MAX = 64 * 1024


class SchedulerError(Exception):
    """The scheduler address cannot be used; the message is one line."""


@dataclass(frozen=True)
class Address:
    """A scheduler address taken apart."""

    text: str
    scheme: str
    host: str
    port: int


def check_address(address: str) -> Address:
    """The address taken apart; SchedulerError when Dask cannot connect to such an address."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "tcp", text  # Dask reads a bare HOST:PORT as tcp://
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        raise SchedulerError(
            f"Dask scheduler address {address}: an {scheme}:// address is a web server's (the "
            f"Dask dashboard's, port {DASHBOARD_PORT} by default), not the scheduler's; give "
            f"tcp://HOST:PORT (port {DEFAULT_PORT} by default; `dask scheduler` prints it as "
            "`Scheduler at: tcp://...`)"
        )
    if scheme not in SCHEMES:
        raise SchedulerError(
            f"Dask scheduler address {address}: Dask does not serve {scheme}:// addresses; "
            f"give {WORKING}"
        )
    hostport = rest.split("/", 1)[0]
    host, port = _split_host_port(hostport)
    if not host or not port:
        raise SchedulerError(
            f"Dask scheduler address {address}: no port; give {scheme}://HOST:PORT "
            f"({DEFAULT_PORT} is Dask's default)"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SchedulerError(
            f"Dask scheduler address {address}: {port!r} is not a port number; give "
            f"{scheme}://HOST:PORT ({DEFAULT_PORT} is Dask's default)"
        )
    return Address(text, scheme, host, int(port))


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # [IPv6]:PORT
        host, _, tail = hostport[1:].partition("]")
        return host, tail[1:] if tail.startswith(":") else ""
    host, _, port = hostport.rpartition(":")
    return (host, port) if host else (hostport, "")


def probe(
    address: Address,
    connect_timeout: float = CONNECT_TIMEOUT,
    greeting_timeout: float = GREETING_TIMEOUT,
) -> None:
    """Raise SchedulerError unless something listens at the address and, for tcp://, greets
    as a Dask scheduler does. Other schemes are checked for a listener only (their greeting
    comes after TLS or a web socket's upgrade)."""
    if address.scheme == "ucx":
        return  # no TCP port to try; Dask's client says what goes wrong
    where = address.text
    try:
        sock = socket.create_connection((address.host, address.port), timeout=connect_timeout)
    except socket.gaierror:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {where}: unknown host {address.host}"
        ) from None
    except ConnectionRefusedError:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {where}: nothing listens there (connection "
            "refused); start the scheduler (`dask scheduler`) or check the address"
        ) from None
    except TimeoutError:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {where}: no answer after "
            f"{connect_timeout:g} s; check the address and the network"
        ) from None
    except OSError as exc:
        raise SchedulerError(
            f"cannot reach the Dask scheduler at {where}: {exc.strerror or exc}"
        ) from None
    with sock:
        if address.scheme == "tcp":
            _check_greeting(sock, where, greeting_timeout)


def _check_greeting(sock: socket.socket, where: str, timeout: float) -> None:
    """A Dask tcp comm's first message: an 8-byte length, then that many bytes of frames
    holding the handshake (msgpack, with a `pickle-protocol` key)."""
    data = _read(sock, 8, timeout)
    if len(data) == 8:
        (length,) = struct.unpack("<Q", data)
        if length <= GREETING_MAX:
            data += _read(sock, length, timeout)
            if b"pickle-protocol" in data:
                return
    if not data and not _answers_http(sock):
        raise SchedulerError(
            f"{where} is not a Dask scheduler: it accepted the connection but did not greet "
            f"as a Dask scheduler does within {timeout:g} s; give the scheduler's own "
            f"address (tcp://HOST:PORT, port {DEFAULT_PORT} by default)"
        )
    if not data or data.startswith(b"HTTP/"):
        raise SchedulerError(_http_message(where))
    raise SchedulerError(
        f"{where} is not a Dask scheduler: it answered, but not as a Dask scheduler does; "
        f"give the scheduler's own address (tcp://HOST:PORT, port {DEFAULT_PORT} by default)"
    )


def _http_message(where: str) -> str:
    return (
        f"{where} is not a Dask scheduler: it is a web server (the Dask dashboard, say, which "
        f"is not the scheduler); give the scheduler's own address (tcp://HOST:PORT, port "
        f"{DEFAULT_PORT} by default; the dashboard is on {DASHBOARD_PORT})"
    )


def _answers_http(sock: socket.socket) -> bool:
    """Whether a server that said nothing answers a web request (a web server waits for
    one)."""
    try:
        sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")
    except OSError:
        return False
    return _read(sock, 5, 2.0).startswith(b"HTTP/")


def _read(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Up to `size` bytes, within `timeout` seconds in all (less if the peer closes)."""
    deadline = time.monotonic() + timeout
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
    return data
