"""What a process listens on: the TCP listening sockets of a process tree (psutil), and whether each is loopback.

>>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("::")
(True, True, False, False)
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    pid: int
    name: str
    ip: str
    port: int


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback); a wildcard address is not loopback."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    mapped = getattr(addr, "ipv4_mapped", None)
    return bool((mapped or addr).is_loopback)


def listeners(pid: int, children: bool = True) -> list[Listener]:
    """The TCP sockets in LISTEN state of ``pid`` (and its descendants)."""
    import psutil

    root = psutil.Process(pid)
    procs = [root] + (root.children(recursive=True) if children else [])
    out = []
    for p in procs:
        try:
            conns = p.net_connections(kind="tcp")
            name = p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out += [Listener(p.pid, name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def exposed(pid: int, children: bool = True) -> list[Listener]:
    """The listeners of ``pid``'s tree that are reachable from other machines (not bound to loopback)."""
    return [x for x in listeners(pid, children) if not is_loopback(x.ip)]
