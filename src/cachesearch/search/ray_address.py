"""``--address`` checked before anything loads: its form, Ray Client's package for ``ray://``, and whether
anything answers there (a short TCP connect). Ray itself would retry for half a minute, printing twenty lines of
``gcs_client`` errors, then raise a traceback; this says it in one line. Imports neither ray nor torch."""

from __future__ import annotations

import importlib.util
import re
import socket

from .settings import SearchError

__all__ = ["check_ray_address"]

_HOST_PORT = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._-]+)):(?P<port>\d{1,5})")
_FORMS = ("auto, HOST:PORT (a running cluster's address, e.g. 10.0.0.5:6379) or ray://HOST:PORT (Ray Client, "
          "e.g. ray://10.0.0.5:10001)")


def ray_client_installed() -> bool:
    """Whether Ray Client's dependency (grpcio, the ``ray[client]`` extra) is installed."""
    return importlib.util.find_spec("grpc") is not None


def check_ray_address(address: str, *, timeout: float = 3.0) -> None:
    """Raise :class:`SearchError` (one line naming ``--address`` and the fix) when ``address`` is malformed, needs
    a package that is missing, or nothing accepts a TCP connection there within ``timeout`` seconds. ``auto`` and
    ``local`` are left to Ray."""
    if address in ("auto", "local"):
        return
    client = address.startswith("ray://")
    m = _HOST_PORT.fullmatch(address.removeprefix("ray://"))
    if m is None or not 0 < int(m["port"]) < 65536:
        raise SearchError(f"--address {address!r}: expected {_FORMS}")
    if client and not ray_client_installed():
        raise SearchError(f"--address {address}: a ray:// address needs Ray Client: pip install 'ray[client]' "
                          f"(or give the cluster's HOST:PORT, port 6379, to join it without Ray Client)")
    host, port = m["v6"] or m["host"], int(m["port"])
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        reason = e.strerror or type(e).__name__
        if isinstance(e, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise SearchError(f"--address {address}: nothing answers at {host}:{port} ({reason}); start the cluster "
                          f"first (`ray start --head` on that host) or leave --address out to start a local "
                          f"Ray") from None
