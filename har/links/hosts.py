"""Who may be fetched: the host rules of HAR Studio, in one place (:func:`check_host`).

Used for the link (:func:`har.links.fetch.check_url`), for every connection and every redirect of a fetch
(:class:`har.links.netguard.Guard`) and for the page yt-dlp ended on. ``allowed`` is ``HAR_ALLOWED_HOSTS`` as
:class:`har.links.options.FetchLimits` holds it: entries ``name``, ``*.example.com`` or ``*``, each optionally with a
port (``name:8080``, ``[::1]:8080``) or any port (``name:*``). An entry without a port allows the default ports of
http and https, 80 and 443, only.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from har.errors import FetchError

HOSTS_ENV = "HAR_ALLOWED_HOSTS"
DEFAULT_PORTS = (80, 443)  # what an entry without a port allows: http's and https's
# youtube.com and its www/m/music subdomains, youtu.be, youtube-nocookie.com (embeds live on www.).
DEFAULT_ALLOWED_HOSTS = (
    "youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be",
    "youtube-nocookie.com", "www.youtube-nocookie.com",
)


def norm_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def split_entry(entry: str) -> tuple[str, str | None]:
    """``"name:8080"`` -> ``("name", "8080")``; ``"[::1]:*"`` -> ``("::1", "*")``; no port -> ``(name, None)``.
    Raises ValueError for a port that is neither a number from 1 to 65535 nor ``*``."""
    entry = entry.strip()
    m = re.fullmatch(r"\[([^\]]*)\](?::(.*))?", entry)
    if m:
        host, port = m.group(1), m.group(2)
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:  # a name, or an IPv6 address without brackets (and so without a port)
        host, port = entry, None
    if port is not None and port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"'{entry}' has no valid port: write name, name:port (1 to 65535) or name:*")
    if not host.strip() or host.strip() in ("*.",):
        raise ValueError(f"'{entry}' has no host name")
    return host, port


def norm_entry(entry: str) -> str:
    """An entry of HAR_ALLOWED_HOSTS written one way: lower case, IDNA, ``[v6]:port``. Raises ValueError."""
    host, port = split_entry(entry)
    host = host.strip()
    if host == "*":
        name = "*"
    elif host.startswith("*."):
        name = "*." + norm_host(host[2:])
    else:
        name = norm_host(host)
    if port is None:
        return name
    return f"[{name}]:{port}" if ":" in name else f"{name}:{port}"


def _entry_allows(entry: str, host: str, port: int | None) -> bool:
    name, ports = split_entry(entry)
    if ports is not None and ports != "*" and port is not None and int(ports) != port:
        return False
    if ports is None and port is not None and port not in DEFAULT_PORTS:
        return False
    return name == "*" or name == host or (name.startswith("*.") and host.endswith(name[1:]))


def host_allowed(host: str, allowed: tuple[str, ...], port: int | None = None) -> bool:
    """``host`` (normalized) on ``port`` is allowed by an entry; ``port=None`` judges the name on any port."""
    return any(_entry_allows(e, host, port) for e in allowed)


def listed_exactly(host: str, allowed: tuple[str, ...], port: int | None = None) -> bool:
    """Hosts named exactly (not through "*" or "*.domain") may resolve to private addresses: the operator chose."""
    return any(split_entry(e)[0] == host and _entry_allows(e, host, port) for e in allowed)


def _allowed_text(allowed: tuple[str, ...]) -> str:
    return ", ".join(allowed) or "none"


def _host_refused(host: str, port: int | None, allowed: tuple[str, ...], via: str = "The link goes") -> FetchError:
    if port is not None and host_allowed(host, allowed):  # the name is listed, for other ports
        return FetchError(
            f"{via} to '{host}' on port {port}, which is not an allowed port for this host on this server (allowed: "
            f"{_allowed_text(allowed)}; a name without a port allows ports 80 and 443 only). The operator can add "
            f"'{host}:{port}' to {HOSTS_ENV}."
        )
    return FetchError(
        f"{via} to '{host}', which is not an allowed host on this server (allowed: {_allowed_text(allowed)}). "
        f"The operator can add hosts to {HOSTS_ENV}."
    )


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for name, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                       ("private", ip.is_private), ("multicast", ip.is_multicast)):
        if flag:
            return name
    return "reserved"


def check_host(host: str, port: int | None, allowed: tuple[str, ...], *, strict: bool = True,
               via: str = "The link goes", resolve: bool = True) -> list[tuple]:
    """The host rules, in one place: for the link (:func:`check_url`) and for every connection of a fetch
    (:class:`har.links.netguard.Guard`). Raises :class:`FetchError` naming the rule that refused ``host``.

    ``strict``: the host, on ``port``, must be allowed (``HAR_ALLOWED_HOSTS``). With ``resolve`` (and a ``port``)
    the host is then resolved, once, here, and unless it is listed by its exact name every address must be public;
    those addresses are returned, to connect to one of them (never to whatever the name resolves to later).
    Without, the name alone is judged and [] returned. A failed lookup raises the resolver's ``OSError``.
    """
    host = norm_host(host)
    if strict and not host_allowed(host, allowed, port):
        raise _host_refused(host, port, allowed, via)
    if port is None or not resolve:
        return []
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if listed_exactly(host, allowed, port):
        return infos
    for info in infos:
        addr = info[4][0]
        try:
            ip = ipaddress.ip_address(addr.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            continue
        if not _is_public(ip):
            shown = f"'{host}'," if host == str(ip) else f"'{host}', which resolves to {ip},"
            raise FetchError(
                f"{via} to {shown} a {_kind(ip)} address: links into a local or reserved network are refused on "
                f"this server unless the host is listed by its exact name in {HOSTS_ENV}."
            )
    return infos
