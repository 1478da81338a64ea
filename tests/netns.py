"""The test session in a network namespace of its own, with the loopback interface only.

Every process the tests start (the CLI, ffmpeg run by yt-dlp, the app, Chromium) inherits it, so none of them can
reach any address but 127.0.0.0/8 and ::1, whatever the code under test does; and every attempt to leave is
counted by the kernel, for the namespace as a whole (``OutNoRoutes``: a connection or a datagram, such as a DNS
query, to an address with no route). :func:`attempts_outside` reads that count: a test that compares it before
and after sees the attempts of its child processes too, which a recorder inside the test process cannot.

Root (as in CI) gets the namespace directly; another user through a user namespace of its own when the kernel
allows it. ``HAR_TEST_NETNS=0`` opts out (the recorder in the test process remains).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = "16sH14x"  # struct ifreq: the interface name, then its flags


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _loopback_up() -> None:
    """``ip link set lo up`` without iproute2 (a fresh Debian may not have it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack(_IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | IFF_UP))


def isolate() -> str:
    """Move this process (its calling thread, and whatever it starts from now on) into a new network namespace
    with loopback only. Returns how: ``"network namespace"`` or ``"user and network namespace"``; raises OSError
    when the kernel refuses both."""
    try:
        _unshare(CLONE_NEWNET)
        how = "network namespace"
    except PermissionError:
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)  # as `unshare -rn`, keeping our own ids
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
        Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        how = "user and network namespace"
    _loopback_up()
    return how


def loopback_only() -> bool:
    """True when this thread sees no network interface but ``lo``."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def attempts_outside() -> int:
    """Connections and datagrams sent towards a non-loopback address (IPv4 and IPv6) in this namespace so far."""
    lines = Path("/proc/thread-self/net/snmp").read_text().splitlines()
    ip = [line.split() for line in lines if line.startswith("Ip:")]
    v4 = int(dict(zip(ip[0][1:], ip[1][1:], strict=True))["OutNoRoutes"])
    v6 = dict(line.split() for line in Path("/proc/thread-self/net/snmp6").read_text().splitlines() if line.strip())
    return v4 + int(v6.get("Ip6OutNoRoutes", 0))
