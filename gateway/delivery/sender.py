"""The HTTP side of delivery: one POST to an endpoint, safe against server-side request forgery.

The endpoint's host is resolved once per connection by `_CheckedResolver`, which aiohttp's
connector calls instead of its own lookup. Every address the lookup returns is checked
(`gateway.delivery.addresses.refusal`); if any is refused, the connection is not made. The
connector then connects to exactly those checked addresses, while the request keeps the name
in its Host header and TLS SNI. There is no second lookup for an attacker's DNS to answer
differently (DNS rebinding). Kept-alive connections are reused only for the same host, and
each was checked when it was opened. Redirects are never followed and proxies from the
environment are ignored.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.delivery.addresses import EndpointUrl, Network, UrlRefused, parse_endpoint, refusal
from gateway.delivery.errors import EndpointTimeout, EndpointUnreachable
from gateway.delivery.resolve import AddressRefused, Lookup, checked_addresses, system_lookup
from gateway.errors import EndpointForbidden
from identity.envelope import MAX_REQUEST_BYTES

_USER_AGENT = "Switchboard-Webhooks/1"
_URLS_KEPT = 10_000  # accepted URLs remembered (all forgotten when full)


class _CheckedResolver(AbstractResolver):
    """aiohttp's resolver port: one lookup, every answer checked, only checked answers used."""

    def __init__(self, lookup: Lookup, allow: tuple[Network, ...]) -> None:
        self._lookup = lookup
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = await checked_addresses(host, port, self._lookup, self._allow)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """What the endpoint answered (the body cut at `max_response_bytes` + 1)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed_s: float


class WebhookSender:
    """POSTs bodies to endpoint URLs. One per gateway process; open until `close`."""

    def __init__(
        self,
        *,
        timeout_s: float,
        allow: Iterable[Network] = (),
        lookup: Lookup | None = None,
        connections: int = 256,
        max_response_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow = tuple(allow)
        self._lookup = lookup or system_lookup
        self._connections = connections
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None
        # URLs already taken apart and found acceptable as written (the answer depends only
        # on the URL and `allow`); their hosts' addresses are still checked at every connection.
        self._accepted_urls: set[str] = set()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_CheckedResolver(self._lookup, self._allow),
                use_dns_cache=False,
                limit=self._connections,
                limit_per_host=0,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                trust_env=False,
                auto_decompress=True,
                headers={"User-Agent": _USER_AGENT},
            )
        return self._session

    async def post(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        max_response_bytes: int | None = None,
    ) -> HttpAnswer:
        """POST once; the answer whatever its status (its body cut after
        `max_response_bytes`, by default the sender's own limit).

        Raises:
            EndpointForbidden: the URL, or an address its host resolves to, is refused.
            EndpointTimeout: no complete answer within the timeout.
            EndpointUnreachable: no connection (DNS, refused, reset, TLS).
        """
        if url not in self._accepted_urls:
            self._check_url(url)
        started = time.perf_counter()
        try:
            async with self._client().post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as response:
                limit = max_response_bytes or self._max_response_bytes
                received = await self._read(response, limit)
                return HttpAnswer(
                    status=response.status,
                    headers=dict(response.headers),
                    body=received,
                    elapsed_s=time.perf_counter() - started,
                )
        except aiohttp.ClientConnectorError as exc:
            refused = _refused_cause(exc)
            if refused is not None:
                raise EndpointForbidden(
                    f"{refused}; endpoints must resolve to public addresses",
                    url=url,
                    address=str(refused.address),
                ) from exc
            raise EndpointUnreachable(_describe(exc), url=url) from exc
        except TimeoutError as exc:
            raise EndpointTimeout(f"no answer within {self._timeout.total:g} s", url=url) from exc
        except aiohttp.ClientError as exc:
            raise EndpointUnreachable(_describe(exc), url=url) from exc

    def _check_url(self, url: str) -> None:
        endpoint = _parse(url)
        if endpoint.literal is not None:
            reason = refusal(endpoint.literal, self._allow)
            if reason is not None:
                raise EndpointForbidden(
                    f"{url} is a {reason} address; endpoints must be public",
                    url=url,
                    address=str(endpoint.literal),
                )
        if len(self._accepted_urls) >= _URLS_KEPT:
            self._accepted_urls.clear()
        self._accepted_urls.add(url)

    async def _read(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                break
        return b"".join(chunks)[: limit + 1]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _parse(url: str) -> EndpointUrl:
    try:
        return parse_endpoint(url)
    except UrlRefused as exc:
        raise EndpointForbidden(str(exc), url=url) from exc


def _refused_cause(exc: BaseException) -> AddressRefused | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, AddressRefused):
            return seen
        inner = getattr(seen, "os_error", None)
        if isinstance(inner, AddressRefused):
            return inner
        seen = seen.__cause__
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]
