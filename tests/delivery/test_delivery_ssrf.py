"""SSRF safety with no allow-list: at registration (over HTTP) and at connect time (the sender),
including a DNS name that resolves to loopback."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from gateway.client import GatewayProblem
from gateway.config import DeliverySettings
from gateway.delivery.addresses import IPAddress
from gateway.delivery.errors import EndpointUnreachable
from gateway.delivery.sender import WebhookSender
from gateway.endpoints import EndpointGuard
from gateway.errors import EndpointForbidden
from identity.keys import PrivateKey
from tests.conftest import Harness
from tests.delivery.webhook_endpoints import Endpoint

REFUSED_URLS = [
    "http://127.0.0.1/",
    "http://127.255.0.9:8080/x",
    "http://10.1.2.3/",
    "http://172.20.0.1/",
    "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    "http://[::1]/",
    "http://[::]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://0x7f000001/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://localhost/",
    "http://localhost.:8080/hook",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_registration_guard_refuses(url: str) -> None:
    """The registration check refuses every private, reserved or odd-literal endpoint."""
    guard = EndpointGuard(DeliverySettings())
    with pytest.raises(EndpointForbidden) as caught:
        await guard.check_registration(url)
    assert caught.value.code == "endpoint_forbidden"
    assert caught.value.fields["url"] == url


async def test_localhost_refusal_names_the_resolved_address() -> None:
    """A name resolving to loopback is refused with the address it resolved to."""
    guard = EndpointGuard(DeliverySettings())
    with pytest.raises(EndpointForbidden) as caught:
        await guard.check_registration("http://localhost:8080/hook")
    address = ipaddress.ip_address(str(caught.value.fields["address"]))
    assert address.is_loopback
    assert str(address) in caught.value.detail


async def test_mixed_answers_are_refused_whole() -> None:
    """A name with one public and one private address is refused (the connector might pick
    either)."""

    async def lookup(_host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")]

    guard = EndpointGuard(DeliverySettings(), lookup=lookup)
    with pytest.raises(EndpointForbidden) as caught:
        await guard.check_registration("https://rebind.example/hook")
    assert caught.value.fields["address"] == "10.0.0.7"


async def test_public_name_and_unresolvable_name() -> None:
    """A name resolving to public addresses passes; a name that does not resolve is refused."""

    async def lookup(host: str, _port: int) -> list[IPAddress]:
        if host == "hooks.acme.example":
            return [ipaddress.ip_address("93.184.216.34")]
        raise OSError("no such host")

    guard = EndpointGuard(DeliverySettings(), lookup=lookup)
    await guard.check_registration("https://hooks.acme.example/in")
    with pytest.raises(EndpointForbidden):
        await guard.check_registration("https://nowhere.acme.example/in")


async def test_registration_over_http_is_a_problem(gateway: Harness) -> None:
    """POST /v1/agents with a loopback endpoint answers 400 endpoint_forbidden naming it."""
    staff, _ = await gateway.brand("acme.example")
    with pytest.raises(GatewayProblem) as caught:
        await staff.register_brand_agent(
            "support@acme.example", PrivateKey.generate(), endpoint="http://localhost:9/hook"
        )
    assert caught.value.status == 400
    assert caught.value.code == "endpoint_forbidden"
    assert ipaddress.ip_address(caught.value.problem["address"]).is_loopback


async def test_sender_refuses_at_connect_time_and_sends_nothing(tmp_path: Path) -> None:
    """Without an allow-list the sender never connects to a loopback server, by name or by
    literal; with the allow-list it does."""
    endpoint = await Endpoint().start()
    try:
        sender = WebhookSender(timeout_s=2.0)
        for _ in range(2):  # a refusal is never remembered as an acceptance
            for url in (
                f"http://localhost:{endpoint.port}/hook",
                f"http://127.0.0.1:{endpoint.port}/hook",
                f"http://[::ffff:127.0.0.1]:{endpoint.port}/hook",
                f"http://2130706433:{endpoint.port}/hook",
            ):
                with pytest.raises(EndpointForbidden):
                    await sender.post(url, b"{}", {})
        assert endpoint.received == []

        allowed = WebhookSender(timeout_s=2.0, allow=(ipaddress.ip_network("127.0.0.0/8"),))
        for _ in range(2):
            answer = await allowed.post(f"http://127.0.0.1:{endpoint.port}/hook", b"{}", {})
            assert answer.status == 204
        await allowed.close()
        assert len(endpoint.received) == 2
        # What one sender's allow-list let through, another's still refuses.
        with pytest.raises(EndpointForbidden):
            await sender.post(f"http://127.0.0.1:{endpoint.port}/hook", b"{}", {})
        await sender.close()
        assert len(endpoint.received) == 2
    finally:
        await endpoint.stop()


async def test_sender_connects_only_to_the_checked_address() -> None:
    """The connection goes to the address the one lookup returned, with the name kept in the
    Host header (no second lookup could send it elsewhere)."""
    endpoint = await Endpoint().start()
    lookups: list[str] = []

    async def lookup(host: str, _port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    sender = WebhookSender(
        timeout_s=2.0, allow=(ipaddress.ip_network("127.0.0.1/32"),), lookup=lookup
    )
    try:
        answer = await sender.post(f"http://hooks.acme.example:{endpoint.port}/hook", b"{}", {})
        assert answer.status == 204
        assert lookups == ["hooks.acme.example"]
        assert endpoint.received[0].headers["host"] == f"hooks.acme.example:{endpoint.port}"
    finally:
        await sender.close()
        await endpoint.stop()


async def test_sender_keeps_one_checked_connection_per_host_alive() -> None:
    """Deliveries to one endpoint reuse one kept-alive connection (one lookup, checked once);
    another host name for the same address gets its own lookup and connection."""
    endpoint = await Endpoint().start()
    lookups: list[str] = []

    async def lookup(host: str, _port: int) -> list[IPAddress]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    sender = WebhookSender(
        timeout_s=2.0, allow=(ipaddress.ip_network("127.0.0.1/32"),), lookup=lookup
    )
    try:
        for _ in range(10):
            answer = await sender.post(f"http://hooks.acme.example:{endpoint.port}/h", b"{}", {})
            assert answer.status == 204
        assert lookups == ["hooks.acme.example"]
        assert len({received.peer for received in endpoint.received}) == 1
        await sender.post(f"http://other.acme.example:{endpoint.port}/h", b"{}", {})
        assert lookups == ["hooks.acme.example", "other.acme.example"]
        assert len({received.peer for received in endpoint.received}) == 2
    finally:
        await sender.close()
        await endpoint.stop()


async def test_refused_connection_is_unreachable_not_forbidden() -> None:
    """An allowed address with nothing listening is a retryable connection failure."""
    sender = WebhookSender(timeout_s=2.0, allow=(ipaddress.ip_network("127.0.0.0/8"),))
    try:
        with pytest.raises(EndpointUnreachable):
            await sender.post(f"http://127.0.0.1:{Endpoint().port}/hook", b"{}", {})
    finally:
        await sender.close()
