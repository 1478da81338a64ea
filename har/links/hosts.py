"""Who may be fetched: the host rules of HAR Studio, in one place (:func:`check_host`).

Used for the link (:func:`har.links.fetch.check_url`), for every connection of a fetch
(:class:`har.links.netguard.Guard`) and
for the page yt-dlp ended on. ``allowed`` is ``HAR_ALLOWED_HOSTS`` as :class:`har.links.options.FetchLimits` holds it:
exact names, ``*.example.com`` or ``*``.
"""

from __future__ import annotations

import ipaddress
import socket

from har.errors import FetchError

HOSTS_ENV = "HAR_ALLOWED_HOSTS"
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


def norm_entry(entry: str) -> str:
    entry = entry.strip()
    if entry.startswith("*."):
        return "*." + norm_host(entry[2:])
    return entry if entry == "*" else norm_host(entry)


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    return any(e == "*" or e == host or (e.startswith("*.") and host.endswith(e[1:])) for e in allowed)


def listed_exactly(host: str, allowed: tuple[str, ...]) -> bool:
    """Hosts named exactly (not through "*" or "*.domain") may resolve to private addresses: the operator chose."""
    return host in allowed


def _allowed_text(allowed: tuple[str, ...]) -> str:
    return ", ".join(allowed) or "none"


def _host_refused(host: str, allowed: tuple[str, ...], via: str = "The link goes") -> FetchError:
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
               via: str = "The link goes") -> list[tuple]:
    """The host rules, in one place: for the link (:func:`check_url`) and for every connection of a fetch
    (:class:`har.links.netguard.Guard`). Raises :class:`FetchError` naming the rule that refused ``host``.

    ``strict``: the host must be allowed (``HAR_ALLOWED_HOSTS``). With a ``port`` the host is then resolved, once,
    here, and unless it is listed by its exact name every address must be public; those addresses are returned, to
    connect to one of them (never to whatever the name resolves to later). ``port=None`` judges the name only and
    returns []. A failed lookup raises the resolver's ``OSError`` (``socket.gaierror``).
    """
    host = norm_host(host)
    if strict and not host_allowed(host, allowed):
        raise _host_refused(host, allowed, via)
    if port is None:
        return []
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    if listed_exactly(host, allowed):
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
