"""The SSRF guard for calls to user endpoints: which addresses may be called; one resolve-and-pin.

A runner URL is user input, and the kit calls it from inside AWS. So, before any byte is sent:

1. only ``http``/``https`` URLs are accepted (``check_url``);
2. the host is resolved once and EVERY address is checked (``blocked_reason``); one bad
   address refuses the whole host, so DNS answers that mix public and internal addresses
   cannot pick their target later;
3. the request is pinned to the checked address (``pin``): the URL carries the IP, while the
   ``Host`` header and the TLS server name (``sni_hostname``, also used for certificate checks)
   keep the original host name. Nothing resolves the name a second time (no DNS rebinding).

``resolve_and_pin`` is the one call that does all three for a start. ``allow_private_network``
(per runner config) opens private ranges, CGNAT and loopback; link-local, cloud metadata,
unspecified, multicast and reserved addresses stay blocked even then. Inside Lambda, loopback
also stays blocked: it is where the Lambda runtime API and extensions listen.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

import httpx

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver: TypeAlias = Callable[[str, int], Sequence[str]]
"""``(host, port) -> IP address strings``. Inject a fake in tests; raise ``OSError`` on failure."""

AddressCategory: TypeAlias = Literal[
    "public",
    "private",
    "cgnat",
    "loopback",
    "reserved",
    "multicast",
    "unspecified",
    "link_local",
    "metadata",
]

ALWAYS_BLOCKED: Final[frozenset[AddressCategory]] = frozenset(
    {"metadata", "link_local", "unspecified", "multicast", "reserved"}
)
"""Never reachable, whatever the runner config says."""

PRIVATE_CATEGORIES: Final[frozenset[AddressCategory]] = frozenset({"private", "cgnat", "loopback"})
"""Reachable only with ``allow_private_network`` (loopback: and only outside Lambda)."""

METADATA_ADDRESSES: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS/GCP/Azure/OCI instance metadata
        "169.254.170.2",  # ECS task metadata and credentials
        "169.254.169.253",  # Amazon DNS
        "169.254.169.123",  # Amazon time sync
        "169.254.100.1",  # Lambda runtime API on newer runtimes
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "fd00:ec2::253",  # Amazon DNS over IPv6
        "fd00:ec2::123",  # Amazon time sync over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata (inside CGNAT space)
    )
)

_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_RESERVED_V4: Final = (ipaddress.ip_network("240.0.0.0/4"), ipaddress.ip_network("0.0.0.0/8"))
_NAT64: Final = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))

# Worst first: an IPv6 form that embeds IPv4 addresses takes the worst of its parts.
_SEVERITY: Final[tuple[AddressCategory, ...]] = (
    "metadata",
    "link_local",
    "unspecified",
    "multicast",
    "reserved",
    "loopback",
    "cgnat",
    "private",
    "public",
)


def parse_ip(text: str) -> IPAddress | None:
    """The address in ``text`` (an IPv6 zone suffix is dropped), or None if it is a name."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries: mapped, compatible, NAT64, 6to4, Teredo."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    value = int(ip)
    if 1 < value < 2**32:  # deprecated IPv4-compatible ::a.b.c.d (:: and ::1 are themselves)
        found.append(ipaddress.IPv4Address(value))
    if any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def _flagged(ip: IPAddress) -> AddressCategory | None:
    """The category that ``ipaddress``'s own flags give, checked in this order, if any."""
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    return None


def _category_v4(ip: ipaddress.IPv4Address) -> AddressCategory:
    if ip in METADATA_ADDRESSES:
        return "metadata"
    flagged = _flagged(ip)
    if flagged is not None:
        return flagged
    if ip in _CGNAT:
        return "cgnat"
    if any(ip in net for net in _RESERVED_V4) or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "reserved"
    if ip.is_private or not ip.is_global:
        return "private"
    return "public"


def address_category(ip: IPAddress) -> AddressCategory:
    """What kind of address ``ip`` is, judging IPv6 forms by the IPv4 addresses they embed."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _category_v4(ip)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    embedded = _embedded_ipv4(ip)
    if embedded:
        categories = {_category_v4(v4) for v4 in embedded}
        if any(ip in net for net in _NAT64[1:]):
            categories.add("private")  # local-use NAT64 prefix: a private translator
        return next(c for c in _SEVERITY if c in categories)
    flagged = _flagged(ip)
    if flagged is not None:
        return flagged
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or ip.is_site_local or not ip.is_global:
        return "private"
    return "public"


def blocked_reason(
    ip: IPAddress, *, allow_private: bool, allow_loopback: bool = True
) -> str | None:
    """Why ``ip`` may not be called (a short phrase), or None if it may."""
    category = address_category(ip)
    if category in ALWAYS_BLOCKED:
        return f"a {category.replace('_', '-')} address (never allowed)"
    if category == "loopback" and not allow_loopback:
        return "a loopback address (never allowed inside Lambda)"
    if category in PRIVATE_CATEGORIES and not allow_private:
        return f"a {category} address (the runner config does not allow private networks)"
    return None


# --- Resolution ----------------------------------------------------------------------------

_DNS_POOL: ThreadPoolExecutor | None = None
_DNS_POOL_LOCK = threading.Lock()


def _dns_pool() -> ThreadPoolExecutor:
    global _DNS_POOL
    with _DNS_POOL_LOCK:
        if _DNS_POOL is None:
            _DNS_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="runner-kit-dns")
        return _DNS_POOL


def _unique(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host`` (order kept, duplicates dropped)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return _unique(str(info[4][0]) for info in infos)


def resolve_with_timeout(host: str, port: int, timeout: float | None) -> list[str]:
    """``system_resolve`` bounded by ``timeout`` (getaddrinfo itself has no timeout)."""
    future = _dns_pool().submit(system_resolve, host, port)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout as exc:
        raise TimeoutError(f"DNS lookup of {host} timed out") from exc


class Blocked(Exception):
    """A URL or address the guard refuses; ``reason`` is ``blocked_address`` or ``invalid_url``."""

    def __init__(self, message: str, reason: Literal["blocked_address", "invalid_url"]) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


def check_url(url: httpx.URL) -> tuple[str, int]:
    """``(host, port)`` of an acceptable URL; raises ``Blocked`` (``invalid_url``) otherwise."""
    if url.scheme not in ("http", "https"):
        raise Blocked(f"only http and https URLs are allowed, not {url.scheme!r}", "invalid_url")
    host = url.raw_host.decode("ascii")
    if not host:
        raise Blocked("the URL has no host", "invalid_url")
    if url.userinfo:
        raise Blocked("credentials in the URL are not allowed; use headers", "invalid_url")
    port = url.port or (443 if url.scheme == "https" else 80)
    return host, port


def choose_address(
    host: str, addresses: Sequence[str], *, allow_private: bool, allow_loopback: bool = True
) -> str:
    """The first of ``addresses`` once EVERY one passed the check; raises ``Blocked``."""
    if not addresses:
        raise Blocked(f"{host} resolved to no address", "blocked_address")
    parsed: list[IPAddress] = []
    for text in addresses:
        ip = parse_ip(text)
        if ip is None:
            raise Blocked(f"{host} resolved to a non-address {text!r}", "blocked_address")
        why = blocked_reason(ip, allow_private=allow_private, allow_loopback=allow_loopback)
        if why is not None:
            shown = f"{host} is" if str(ip) == host else f"{host} resolves to {ip},"
            raise Blocked(f"{shown} {why}", "blocked_address")
        parsed.append(ip)
    return str(parsed[0])


def pin(url: httpx.URL, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """Point ``url`` at the checked ``address``: ``(url, extra headers, request extensions)``.

    ``Host`` keeps the name (with a non-default port); ``sni_hostname`` keeps the TLS server
    name, which is also the name the certificate is verified against.
    """
    host = url.raw_host.decode("ascii")
    if parse_ip(host) is not None:
        return url, {}, {}  # already an address: nothing was resolved, nothing to pin
    host_header = host if url.port is None else f"{host}:{url.port}"
    extensions: dict[str, Any] = {"sni_hostname": host} if url.scheme == "https" else {}
    return url.copy_with(host=address), {"Host": host_header}, extensions


@dataclass(frozen=True)
class Pinned:
    """A checked request target: ``url`` carries the address, ``headers`` the ``Host``."""

    url: httpx.URL
    host: str
    headers: dict[str, str]
    extensions: dict[str, Any]


class ResolveFailed(Exception):
    """The host did not resolve (``OSError``, timeout or a bad name is the cause)."""

    def __init__(self, host: str, cause: BaseException) -> None:
        text = str(cause).strip()
        shown = f"{type(cause).__name__}: {text}" if text else type(cause).__name__
        super().__init__(f"cannot resolve {host}: {shown}")


async def _system_resolve(host: str, port: int) -> list[str]:
    import anyio  # system_resolve without blocking the event loop

    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return _unique(str(info[4][0]) for info in infos)


async def resolve_and_pin(
    url: httpx.URL,
    *,
    allow_private: bool,
    allow_loopback: bool,
    timeout_s: float,
    resolver: Resolver | None = None,
) -> Pinned:
    """Check ``url``, resolve its host once (bounded), check every address, pin the first.

    Raises ``Blocked`` (the URL or an address is refused) or ``ResolveFailed``.
    """
    import anyio

    host, port = check_url(url)
    if parse_ip(host) is not None:
        addresses = [host]
    else:
        try:
            if resolver is not None:
                addresses = list(resolver(host, port))
            else:
                with anyio.fail_after(timeout_s):
                    addresses = await _system_resolve(host, port)
        except (OSError, UnicodeError) as exc:  # TimeoutError is an OSError
            raise ResolveFailed(host, exc) from exc
    address = choose_address(
        host, addresses, allow_private=allow_private, allow_loopback=allow_loopback
    )
    pinned, headers, extensions = pin(url, address)
    return Pinned(pinned, host, headers, extensions)
