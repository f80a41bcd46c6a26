"""Before Ray is asked to join a cluster: is anything listening at the address?

`ray.init(address=...)` with no cluster there retries for minutes and then raises a
`ConnectionError` with a traceback; a plain TCP connection answers in a bounded time and lets
the user get one line saying what is wrong.
"""

from __future__ import annotations

import os
import socket

from fashionlab.errors import ConfigError

CLIENT_PORT = 10001  # `ray://host` (Ray Client)
GCS_PORT = 6379  # `host` (joining the cluster's GCS directly)
TIMEOUT_ENV = "FASHIONLAB_RAY_TIMEOUT"
DEFAULT_TIMEOUT = 10.0


def connect_timeout() -> float:
    """Seconds to wait for the cluster: FASHIONLAB_RAY_TIMEOUT, else 10."""
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r}: expected seconds between 0 and 3600")
    return value


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
    try:
        with socket.create_connection((host, port), timeout=wait):
            return
    except TimeoutError:
        why = f"no answer within {wait:g} s"
    except socket.gaierror:
        why = f"unknown host {host!r}"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    raise ConfigError(
        f"no Ray cluster at {address} ({why}); start one there (ray start --head) or check "
        f"the host and port (waited at most {wait:g} s: {TIMEOUT_ENV})"
    )
