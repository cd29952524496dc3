"""Where a start goes and how it is sent: the target, the ``/start`` request, a guarded transport.

The transport adds two things httpx does not have: the network backend refuses to connect to
anything but a checked IP literal (a backstop behind ``guard.pin``), and each connection's reads
honour an absolute deadline that the SSE reader moves as the stream progresses
(``DeadlineStream.read_deadline``): httpx's own ``read=`` timeout restarts on every ping.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpcore
import httpx

from adapters.clock import SYSTEM_CLOCK
from adapters.runner.guard import Pinned, blocked_reason, parse_ip
from core.errors import InternalError, RunnerPoolError
from core.models import PoolKey, RunnerConfig
from core.ports import Clock
from core.protocol import START_PATH
from core.redaction import secret_forms, url_secrets, without_userinfo

USER_AGENT: Final = "runner-kit/0.1"
EVENT_STREAM: Final = "text/event-stream"


@dataclass(frozen=True)
class StartTarget:
    """Where and how to start a runner. ``headers`` are secrets: the repr shows names only."""

    url: str
    headers: Mapping[str, str]
    pool: PoolKey
    total_slots: int
    request_lifespan: int
    allow_private_network: bool = False
    secrets: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    """Every form of the header values and URL userinfo, for ``core.redaction``."""
    unresolved: RunnerPoolError | None = field(default=None, repr=False, compare=False)
    """Why a referenced header value could not be read: every start fails with it."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", dict(self.headers))  # a private copy
        values = [*self.headers.values(), *url_secrets(self.url)]
        object.__setattr__(self, "secrets", secret_forms(values))

    def __repr__(self) -> str:
        names = ", ".join(f"{name}: ***" for name in self.headers)
        return (
            f"StartTarget(url={without_userinfo(self.url)!r}, headers={{{names}}}, "
            f"pool={self.pool.id!r}, "
            f"total_slots={self.total_slots}, request_lifespan={self.request_lifespan}, "
            f"allow_private_network={self.allow_private_network})"
        )

    @classmethod
    def from_config(cls, config: RunnerConfig) -> StartTarget:
        """The target of a saved runner config, its Secrets Manager references read (cached)."""
        headers = config.header_values()
        unresolved: RunnerPoolError | None = None
        if config.header_secrets:
            from adapters.secrets import SecretUnavailableError, resolve_secrets

            try:
                headers.update(resolve_secrets(config.header_secrets))
            except SecretUnavailableError as exc:
                unresolved = InternalError(message=str(exc))
        return cls(
            url=config.url,
            headers=headers,
            unresolved=unresolved,
            pool=config.pool,
            total_slots=config.slots_per_runner * config.max_runners,
            request_lifespan=config.request_lifespan,
            allow_private_network=config.allow_private_network,
        )


def start_url(url: str) -> httpx.URL:
    """``{url without trailing /}/start``, keeping any query string."""
    parsed = httpx.URL(url)
    return parsed.copy_with(path=parsed.path.rstrip("/") + START_PATH)


def start_request(
    http: httpx.AsyncClient,
    target: StartTarget,
    body: Mapping[str, Any],
    pinned: Pinned,
    timeout: httpx.Timeout,
) -> httpx.Request:
    """The ``POST /start`` to the pinned address; the kit's reserved headers win."""
    headers = httpx.Headers(dict(target.headers))
    headers.update(pinned.headers)
    headers.update(
        {
            "x-runner-pool": target.pool.id,
            "x-runner-total-slots": str(target.total_slots),
            "x-runner-request-lifespan": str(target.request_lifespan),
            "accept": EVENT_STREAM,
            "cache-control": "no-store",
        }
    )
    return http.build_request(
        "POST",
        pinned.url,
        headers=headers,
        json=dict(body),
        timeout=timeout,
        extensions=pinned.extensions,
    )


def http_client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    """The httpx client of runner starts: no redirects, no environment, the kit's user agent."""
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,  # no env proxies (they would bypass pinning), no .netrc
        headers={"user-agent": USER_AGENT},
    )


def set_read_deadline(response: httpx.Response, when: float) -> bool:
    """Make the response's reads stop at ``when`` (the transport's clock); False: not guarded."""
    stream = response.extensions.get("network_stream")
    if isinstance(stream, DeadlineStream):
        stream.read_deadline = when
        return True
    return False  # another transport (MockTransport in tests): deadlines apply between chunks


# --- Deadline-aware, guarded network backend -------------------------------------------------


class BlockedAddressError(httpcore.ConnectError):
    """The guard refused an address (raised before any connection is attempted)."""


def _backstop(host: str, allow_loopback: bool) -> None:
    """Refuse a connection the pinning step should have made impossible."""
    ip = parse_ip(host)
    if ip is None:
        raise BlockedAddressError(f"refusing to connect to unresolved name {host!r}")
    why = blocked_reason(ip, allow_private=True, allow_loopback=allow_loopback)
    if why is not None:
        raise BlockedAddressError(f"refusing to connect to {ip}: {why}")


class DeadlineStream(httpcore.AsyncNetworkStream):
    """A network stream whose reads stop at ``read_deadline`` (absolute, on ``clock``)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream, clock: Clock) -> None:
        self._inner = inner
        self._clock = clock
        self.read_deadline: float | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self.read_deadline is not None:
            timeout = self.read_deadline - self._clock.monotonic()
            if timeout <= 0:
                raise httpcore.ReadTimeout("read deadline reached")
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
        return DeadlineStream(inner, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to checked IP literals (anyio: asyncio or trio); hands out
    ``DeadlineStream``s."""

    def __init__(self, *, allow_loopback: bool = True, clock: Clock = SYSTEM_CLOCK) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_loopback = allow_loopback
        self._clock = clock

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
        return DeadlineStream(inner, self._clock)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    # httpx.AsyncHTTPTransport takes no network backend, so build its httpcore pool ourselves.
    # Each /start is one long stream: no keep-alive, so a TLS connection made for one host
    # name is never reused for another name that resolves to the same address.
    def __init__(self, backend: GuardedBackend, ssl_context: ssl.SSLContext) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=None,
            max_keepalive_connections=0,
            http1=True,
            http2=False,
            network_backend=backend,
        )


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context per process (building one reads the CA bundle: ~40 ms)."""
    return httpx.create_ssl_context()


def guarded_transport(
    *,
    allow_loopback: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> httpx.AsyncBaseTransport:
    """An httpx transport that connects only to checked addresses, with deadline-aware reads."""
    backend = GuardedBackend(allow_loopback=allow_loopback, clock=clock)
    return _GuardedTransport(backend, ssl_context or default_ssl_context())
