"""Socket guard for tests: any connection to a non-loopback address is logged and refused.

Put this folder on PYTHONPATH (and set XSYN_NET_LOG to a file) for a subprocess — every
Python process it starts (snakemake, the xsyn CLI, ultralytics workers) imports it at start-up.
"""

import os
import socket

_LOG = os.environ.get("XSYN_NET_LOG")
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return True
    host = str(address[0]) if address else ""
    return host.startswith(_LOCAL) or host == ""


def _record(what: str) -> None:
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {what}\n")


def _guarded_connect(self, address):
    if not _is_local(address):
        _record(f"connect {address!r}")
        raise ConnectionRefusedError(f"network access blocked by the test guard: {address!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _is_local(address):
        _record(f"connect_ex {address!r}")
        return 111
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not str(host).startswith(_LOCAL):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror(f"name resolution blocked by the test guard: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo
