"""The SSRF guard: every resolved address is checked, and refusal comes before any connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import httpcore
import httpx
import pytest

from adapters.runner import guard, transport
from adapters.runner.client import AsyncRunnerClient, RunnerClient
from adapters.runner.transport import StartTarget
from core.errors import ServerlessConnectionError
from core.exceptions import RunnerError
from core.models import PoolKey


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests open no sockets: any attempt to connect fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a unit test tried to open a connection")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


# Each address with the category the guard gives it (one row per range it knows).
CATEGORIES = [
    pytest.param("93.184.216.34", "public", id="public_v4"),
    pytest.param("2606:2800:220:1:248:1893:25c8:1946", "public", id="public_v6"),
    pytest.param("10.1.2.3", "private", id="rfc1918_10"),
    pytest.param("172.16.0.1", "private", id="rfc1918_172"),
    pytest.param("192.168.1.1", "private", id="rfc1918_192"),
    pytest.param("fd12:3456::1", "private", id="ula"),
    pytest.param("192.0.2.1", "private", id="documentation"),
    pytest.param("100.64.0.1", "cgnat", id="cgnat_low"),
    pytest.param("100.127.255.254", "cgnat", id="cgnat_high"),
    pytest.param("127.0.0.1", "loopback", id="loopback"),
    pytest.param("127.255.0.9", "loopback", id="loopback_range"),
    pytest.param("::1", "loopback", id="loopback_v6"),
    pytest.param("0.0.0.0", "unspecified", id="unspecified"),
    pytest.param("::", "unspecified", id="unspecified_v6"),
    pytest.param("0.1.2.3", "reserved", id="this_network"),
    pytest.param("240.0.0.1", "reserved", id="class_e"),
    pytest.param("255.255.255.255", "reserved", id="broadcast"),
    pytest.param("224.0.0.1", "multicast", id="multicast"),
    pytest.param("ff02::1", "multicast", id="multicast_v6"),
    pytest.param("169.254.1.1", "link_local", id="link_local"),
    pytest.param("fe80::1", "link_local", id="link_local_v6"),
    pytest.param("169.254.169.254", "metadata", id="imds"),
    pytest.param("169.254.170.2", "metadata", id="ecs_metadata"),
    pytest.param("fd00:ec2::254", "metadata", id="imds_v6"),
    pytest.param("100.100.100.200", "metadata", id="alibaba_metadata"),
    # IPv6 forms that embed an IPv4 address are judged by what they embed.
    pytest.param("::ffff:127.0.0.1", "loopback", id="mapped_loopback"),
    pytest.param("::ffff:169.254.169.254", "metadata", id="mapped_metadata"),
    pytest.param("::ffff:10.0.0.1", "private", id="mapped_private"),
    pytest.param("::ffff:93.184.216.34", "public", id="mapped_public"),
    pytest.param("::127.0.0.1", "loopback", id="compatible_loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", "metadata", id="nat64_metadata"),
    pytest.param("64:ff9b::7f00:1", "loopback", id="nat64_loopback"),
    pytest.param("64:ff9b::5db8:d822", "public", id="nat64_public"),
    pytest.param("64:ff9b:1::a00:1", "private", id="local_nat64_private"),
    pytest.param("2002:a9fe:a9fe::1", "metadata", id="6to4_metadata"),
    pytest.param("2002:7f00:1::1", "loopback", id="6to4_loopback"),
    pytest.param("2002:6440:1::1", "cgnat", id="6to4_cgnat"),
    pytest.param("2002:5db8:d822::1", "public", id="6to4_public"),
    pytest.param("2001:0:5db8:d822::5601:5601", "metadata", id="teredo_client_metadata"),
]


@pytest.mark.parametrize(("address", "category"), CATEGORIES)
def test_address_category(address: str, category: str) -> None:
    assert guard.address_category(ipaddress.ip_address(address)) == category


@pytest.mark.parametrize(
    ("address", "allow_private", "allow_loopback", "blocked"),
    [
        pytest.param("93.184.216.34", False, True, False, id="public"),
        pytest.param("10.0.0.1", False, True, True, id="private_default"),
        pytest.param("10.0.0.1", True, True, False, id="private_allowed"),
        pytest.param("100.64.0.1", False, True, True, id="cgnat_default"),
        pytest.param("100.64.0.1", True, True, False, id="cgnat_allowed"),
        pytest.param("127.0.0.1", True, True, False, id="loopback_allowed"),
        pytest.param("127.0.0.1", True, False, True, id="loopback_in_lambda"),
        pytest.param("::ffff:127.0.0.1", True, False, True, id="mapped_loopback_in_lambda"),
        pytest.param("169.254.169.254", True, True, True, id="metadata_even_allowed"),
        pytest.param("fd00:ec2::254", True, True, True, id="metadata_v6_even_allowed"),
        pytest.param("100.100.100.200", True, True, True, id="cgnat_metadata_even_allowed"),
        pytest.param("169.254.7.7", True, True, True, id="link_local_even_allowed"),
        pytest.param("64:ff9b::a9fe:a9fe", True, True, True, id="nat64_metadata_even_allowed"),
        pytest.param("2002:a9fe:a9fe::", True, True, True, id="6to4_metadata_even_allowed"),
        pytest.param("0.0.0.0", True, True, True, id="unspecified_even_allowed"),
        pytest.param("239.1.1.1", True, True, True, id="multicast_even_allowed"),
    ],
)
def test_blocked_reason(
    address: str, allow_private: bool, allow_loopback: bool, blocked: bool
) -> None:
    why = guard.blocked_reason(
        ipaddress.ip_address(address), allow_private=allow_private, allow_loopback=allow_loopback
    )
    assert (why is not None) == blocked


def target(url: str, *, allow_private: bool = False) -> StartTarget:
    pool = PoolKey(namespace="ns", runner_name="r")
    return StartTarget(url, {"Authorization": "Bearer secret"}, pool, 1, 60, allow_private)


class Spy:
    """A transport and resolver that record what reached them."""

    def __init__(self, addresses: list[str]) -> None:
        self.addresses = addresses
        self.lookups: list[tuple[str, int]] = []
        self.sent: list[httpx.Request] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append((host, port))
        return self.addresses

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(500)

    async def handle_async(self, request: httpx.Request) -> httpx.Response:
        return self.handle(request)


def refused(spy: Spy, t: StartTarget, *, allow_loopback: bool = True) -> ServerlessConnectionError:
    client = RunnerClient(
        transport=httpx.MockTransport(spy.handle),
        resolver=spy.resolve,
        allow_loopback=allow_loopback,
    )
    with client, pytest.raises(RunnerError) as info, client.start(t, {}):
        pass
    assert spy.sent == [], "the request must not be sent"
    assert isinstance(info.value.error, ServerlessConnectionError)
    return info.value.error


@pytest.mark.parametrize(
    ("addresses", "allow_private"),
    [
        pytest.param(["169.254.169.254"], False, id="metadata"),
        pytest.param(["169.254.169.254"], True, id="metadata_with_allow_private"),
        pytest.param(["93.184.216.34", "10.0.0.5"], False, id="one_private_among_public"),
        pytest.param(["93.184.216.34", "169.254.169.254"], True, id="one_metadata_among_public"),
        pytest.param(["::ffff:169.254.169.254"], True, id="ipv4_mapped_metadata"),
        pytest.param(["64:ff9b::a9fe:a9fe"], True, id="nat64_metadata"),
        pytest.param(["2002:a9fe:a9fe::1"], True, id="6to4_metadata"),
        pytest.param(["100.64.3.4"], False, id="cgnat"),
        pytest.param(["fe80::1%eth0"], True, id="link_local_with_zone"),
        pytest.param(["127.0.0.1"], False, id="loopback"),
        pytest.param([], False, id="no_address"),
        pytest.param(["not-an-ip"], False, id="resolver_returned_garbage"),
    ],
)
def test_resolved_host_refused_before_any_connection(
    addresses: list[str], allow_private: bool
) -> None:
    spy = Spy(addresses)
    error = refused(spy, target("https://evil.example.com", allow_private=allow_private))
    assert error.reason == "blocked_address"
    assert spy.lookups == [("evil.example.com", 443)]
    assert "secret" not in error.message


@pytest.mark.parametrize(
    ("url", "allow_private", "reason"),
    [
        # IP literals are checked as they stand, even where private addresses are allowed.
        pytest.param(
            "http://169.254.169.254/latest", True, "blocked_address", id="metadata_literal"
        ),
        pytest.param(
            "http://[::ffff:169.254.169.254]/", True, "blocked_address", id="mapped_literal"
        ),
        pytest.param("http://[64:ff9b::a9fe:a9fe]/", True, "blocked_address", id="nat64_literal"),
        pytest.param("http://[fd00:ec2::254]/", True, "blocked_address", id="imds_v6_literal"),
        pytest.param("http://0.0.0.0:8080/", True, "blocked_address", id="unspecified"),
        # URLs the client never sends.
        pytest.param("ftp://runner.example.com/", False, "invalid_url", id="ftp"),
        pytest.param("file:///etc/passwd", False, "invalid_url", id="file"),
        pytest.param("https://user:pw@runner.example.com/", False, "invalid_url", id="userinfo"),
        pytest.param("http://", False, "invalid_url", id="no_host"),
    ],
)
def test_urls_refused_without_lookup(url: str, allow_private: bool, reason: str) -> None:
    spy = Spy(["93.184.216.34"])
    error = refused(spy, target(url, allow_private=allow_private))
    assert error.reason == reason
    assert spy.lookups == []


def test_loopback_refused_inside_lambda_even_with_allow_private() -> None:
    spy = Spy(["127.0.0.1"])
    error = refused(spy, target("http://localhost:9001", allow_private=True), allow_loopback=False)
    assert error.reason == "blocked_address"
    assert "Lambda" in error.message


def test_allowed_request_is_pinned_to_the_checked_address() -> None:
    spy = Spy(["10.0.0.7", "10.0.0.8"])
    client = RunnerClient(transport=httpx.MockTransport(spy.handle), resolver=spy.resolve)
    with (
        client,
        pytest.raises(RunnerError),
        client.start(target("https://internal.example.com:8443/x", allow_private=True), {}),
    ):
        pass
    (request,) = spy.sent
    assert request.url.host == "10.0.0.7"
    assert request.url.port == 8443
    assert request.headers["host"] == "internal.example.com:8443"
    assert request.extensions["sni_hostname"] == "internal.example.com"


def test_async_client_refuses_before_any_connection() -> None:
    spy = Spy(["93.184.216.34", "::ffff:127.0.0.1"])

    async def main() -> RunnerError:
        client = AsyncRunnerClient(
            transport=httpx.MockTransport(spy.handle_async), resolver=spy.resolve
        )
        async with client:
            try:
                async with client.start(target("https://x.example.com"), {}):
                    pass
            except RunnerError as exc:
                return exc
        raise AssertionError("not refused")

    exc = asyncio.run(main())
    assert isinstance(exc.error, ServerlessConnectionError)
    assert exc.error.reason == "blocked_address"
    assert spy.sent == []


def test_pin_keeps_ip_literal_urls() -> None:
    url = httpx.URL("http://[::1]:8080/start")
    assert guard.pin(url, "::1") == (url, {}, {})
    pinned, headers, ext = guard.pin(httpx.URL("http://h.example/start"), "2001:db8::1")
    assert str(pinned) == "http://[2001:db8::1]/start"
    assert headers == {"Host": "h.example"}
    assert ext == {}


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("169.254.169.254", id="metadata"),
        pytest.param("::ffff:169.254.169.254", id="mapped_metadata"),
        pytest.param("fe80::1", id="link_local"),
        pytest.param("runner.example.com", id="unresolved_name"),
    ],
)
def test_network_backend_backstop_refuses_before_connecting(host: str) -> None:
    with pytest.raises(transport.BlockedAddressError):
        asyncio.run(transport.GuardedBackend().connect_tcp(host, 80))


def test_backstop_refuses_loopback_when_told() -> None:
    with pytest.raises(transport.BlockedAddressError):
        asyncio.run(transport.GuardedBackend(allow_loopback=False).connect_tcp("127.0.0.1", 9001))
    with pytest.raises(transport.BlockedAddressError):
        asyncio.run(transport.GuardedBackend().connect_unix_socket("/var/run/docker.sock"))


def test_real_transport_refuses_metadata_before_connecting() -> None:
    """The guarded transport itself (no MockTransport) never reaches the socket layer."""
    spy = Spy(["169.254.169.254"])
    client = RunnerClient(resolver=spy.resolve)
    with (
        client,
        pytest.raises(RunnerError) as info,
        client.start(target("http://metadata.example", allow_private=True), {}),
    ):
        pass
    assert isinstance(info.value.error, ServerlessConnectionError)
    assert info.value.error.reason == "blocked_address"
    guarded = transport.guarded_transport()
    request = httpx.Request("GET", "http://169.254.169.254/latest")
    with pytest.raises(httpx.ConnectError) as raw:
        asyncio.run(guarded.handle_async_request(request))
    assert isinstance(raw.value.__cause__, httpcore.ConnectError)
