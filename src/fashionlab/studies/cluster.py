"""Before Ray is asked to join a cluster: is anything listening at the address, and does it
speak Ray's protocol?

`ray.init(address=...)` with no cluster there retries for minutes and then raises a
`ConnectionError` with a traceback; pointed at a port where some other service listens (a web
server, SSH) it retries forever. A plain TCP connection and the first bytes of an HTTP/2
exchange (Ray's GCS and Ray Client are gRPC servers, and a gRPC server answers the HTTP/2
preface with a SETTINGS frame) answer in a bounded time and let the user get one line saying
what is wrong.
"""

from __future__ import annotations

import socket

from fashionlab._env import seconds_from_env
from fashionlab.errors import ConfigError

CLIENT_PORT = 10001  # `ray://host` (Ray Client)
GCS_PORT = 6379  # `host` (joining the cluster's GCS directly)
TIMEOUT_ENV = "FASHIONLAB_RAY_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
# The HTTP/2 client preface and an empty SETTINGS frame (RFC 9113 sections 3.4 and 6.5).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_FRAME_HEADER = 9
_SETTINGS = 4


def connect_timeout() -> float:
    """Seconds to wait for the cluster: FASHIONLAB_RAY_TIMEOUT, else 10."""
    return seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT, 3600)


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a cluster address; None for 'auto'/'local', which Ray resolves itself."""
    text = address.strip()
    if text in ("auto", "local"):
        return None
    default_port = GCS_PORT
    if text.startswith("ray://"):
        text, default_port = text[len("ray://") :], CLIENT_PORT
    elif "://" in text:
        raise ConfigError(f"--address {address!r}: expected ray://HOST[:PORT] or HOST:PORT")
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--address {address!r}: expected ray://HOST[:PORT] or HOST:PORT")
    return host, int(port_text)


def check_reachable(address: str, timeout: float | None = None) -> None:
    """A one-line ConfigError, within `timeout` seconds, when nothing accepts connections at
    `address`."""
    target = parse_address(address)
    if target is None:
        return
    host, port = target
    wait = connect_timeout() if timeout is None else timeout
    why = None
    try:
        with socket.create_connection((host, port), timeout=wait) as connection:
            reply = _first_frame(connection, wait)
    except TimeoutError:
        why = f"no answer within {wait:g} s"
    except socket.gaierror:
        why = f"unknown host {host!r}"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    if why is not None:
        raise ConfigError(
            f"no Ray cluster at {address} ({why}); start one there (ray start --head) or check "
            f"the host and port (waited at most {wait:g} s: {TIMEOUT_ENV})"
        )
    if len(reply) < _FRAME_HEADER or reply[3] != _SETTINGS:
        raise ConfigError(
            f"something listens at {address} but it is not a Ray cluster (it does not answer "
            f"as a gRPC server does); check the port: the head's GCS port ({GCS_PORT} unless "
            f"ray start --port said otherwise), or ray://HOST:{CLIENT_PORT} for Ray Client"
        )


def _first_frame(connection: socket.socket, wait: float) -> bytes:
    """The first HTTP/2 frame header the server sends after our preface (fewer bytes when it
    answers in another protocol or hangs up); TimeoutError when it says nothing."""
    connection.settimeout(wait)
    connection.sendall(_HTTP2_PREFACE)
    reply = b""
    while len(reply) < _FRAME_HEADER:
        chunk = connection.recv(_FRAME_HEADER - len(reply))
        if not chunk:
            break
        reply += chunk
    return reply
