"""Outbound safety for calls to user endpoints: an SSRF guard and deadline-aware connections.

A runner URL is user input, and the kit calls it from inside AWS. So, before any byte is sent:

1. only ``http``/``https`` URLs are accepted;
2. the host is resolved once and EVERY address is checked (``blocked_reason``); one bad
   address refuses the whole host, so DNS answers that mix public and internal addresses
   cannot pick their target later;
3. the request is pinned to the checked address (``pin``): the URL carries the IP, while the
   ``Host`` header and the TLS server name (``sni_hostname``, also used for certificate checks)
   keep the original host name. Nothing resolves the name a second time (no DNS rebinding).

``allow_private_network`` (per runner config) opens private ranges, CGNAT and loopback; link-local,
cloud metadata, unspecified, multicast and reserved addresses stay blocked even then. Inside
Lambda, loopback also stays blocked: it is where the Lambda runtime API and extensions listen.

The transports built here add two things httpx does not have: the network backend refuses to
connect to anything but a checked IP literal (a backstop behind ``pin``), and each connection's
reads honour an absolute deadline that the SSE reader moves as the stream progresses
(``DeadlineStream.read_deadline``): httpx's own ``read=`` timeout restarts on every ping.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final, Literal, TypeAlias

import httpcore
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


class BlockedAddressError(httpcore.ConnectError):
    """The guard refused an address (raised before any connection is attempted)."""


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


def _category_v4(ip: ipaddress.IPv4Address) -> AddressCategory:
    if ip in METADATA_ADDRESSES:
        return "metadata"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
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
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
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


async def async_system_resolve(host: str, port: int) -> list[str]:
    """``system_resolve`` without blocking the event loop."""
    import anyio

    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return _unique(str(info[4][0]) for info in infos)


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


# --- Deadline-aware, guarded network backends ----------------------------------------------


def _backstop(host: str, allow_loopback: bool) -> None:
    """Refuse a connection the pinning step should have made impossible."""
    ip = parse_ip(host)
    if ip is None:
        raise BlockedAddressError(f"refusing to connect to unresolved name {host!r}")
    why = blocked_reason(ip, allow_private=True, allow_loopback=allow_loopback)
    if why is not None:
        raise BlockedAddressError(f"refusing to connect to {ip}: {why}")


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpcore.ReadTimeout("read deadline reached")
    return remaining


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads stop at ``read_deadline`` (absolute ``time.monotonic()``)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self.read_deadline: float | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.read_deadline is not None:
            timeout = _remaining(self.read_deadline)
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncDeadlineStream(httpcore.AsyncNetworkStream):
    """The async twin of ``DeadlineStream``."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self.read_deadline: float | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.read_deadline is not None:
            timeout = _remaining(self.read_deadline)
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return AsyncDeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to checked IP literals; hands out ``DeadlineStream``s."""

    def __init__(self, *, allow_loopback: bool = True) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_loopback = allow_loopback

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        _backstop(host, self._allow_loopback)
        return DeadlineStream(
            self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise BlockedAddressError("unix sockets are not allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncGuardedBackend(httpcore.AsyncNetworkBackend):
    """The async twin of ``GuardedBackend`` (anyio: asyncio or trio)."""

    def __init__(self, *, allow_loopback: bool = True) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_loopback = allow_loopback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        _backstop(host, self._allow_loopback)
        inner = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return AsyncDeadlineStream(inner)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    # httpx.HTTPTransport takes no network backend, so build its httpcore pool ourselves.
    # Each /start is one long stream: no keep-alive, so a TLS connection made for one host
    # name is never reused for another name that resolves to the same address.
    def __init__(self, *, allow_loopback: bool, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allow_loopback=allow_loopback),
        )


class _AsyncGuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_loopback: bool, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=AsyncGuardedBackend(allow_loopback=allow_loopback),
        )


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (building one reads the CA bundle: ~40 ms)."""
    return httpx.create_ssl_context()


def guarded_transport(
    *, allow_loopback: bool = True, ssl_context: ssl.SSLContext | None = None
) -> httpx.BaseTransport:
    """An httpx transport that connects only to checked addresses, with deadline-aware reads."""
    context = ssl_context or default_ssl_context()
    return _GuardedTransport(allow_loopback=allow_loopback, ssl_context=context)


def async_guarded_transport(
    *, allow_loopback: bool = True, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncBaseTransport:
    """The async twin of ``guarded_transport``."""
    context = ssl_context or default_ssl_context()
    return _AsyncGuardedTransport(allow_loopback=allow_loopback, ssl_context=context)
