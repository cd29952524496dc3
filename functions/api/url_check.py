"""Runner-config URL validation at save time, with the outbound safety policy of
``adapters.runner.guard`` (the same rules every runner start enforces again)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Resolver = Callable[[str, int], Sequence[str]]


def make_url_check(
    resolver: Resolver, *, allow_loopback: bool
) -> Callable[[str, bool], str | None]:
    """``check(url, allow_private_network) -> refusal | None``.

    A host that does not resolve now is accepted: DNS may not exist yet, and every start
    resolves and checks again before connecting. A host that resolves to a refused address is
    refused now, so the user hears it when saving rather than as a pool error later.
    """

    def check(url: str, allow_private: bool) -> str | None:
        import httpx  # here, not at import: keeps httpx out of the API's cold start

        from adapters.runner.guard import Blocked, check_url, choose_address, parse_ip

        try:
            host, port = check_url(httpx.URL(url))
        except Blocked as exc:
            return exc.message
        except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
            return f"invalid URL: {exc}"
        if parse_ip(host) is not None:
            addresses: Sequence[str] = [host]
        else:
            try:
                addresses = resolver(host, port)
            except (OSError, TimeoutError, UnicodeError):
                return None
        try:
            choose_address(
                host, addresses, allow_private=allow_private, allow_loopback=allow_loopback
            )
        except Blocked as exc:
            return exc.message
        return None

    return check
