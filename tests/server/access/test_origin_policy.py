"""OriginPolicy: which browser pages may open /ws. Decided on the Origin header alone, no server."""

from __future__ import annotations

import pytest

from edgevoice.server.access.origins import OriginPolicy

HOSTS = {"localhost", "127.0.0.1", "::1", "Kitchen", "kitchen.local", "192.168.1.20"}
PORT = 8765


@pytest.fixture
def policy() -> OriginPolicy:
    return OriginPolicy(HOSTS, "")


def test_no_origin_is_not_a_browser_and_is_allowed(policy: OriginPolicy) -> None:
    assert policy.allows(None, PORT)


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:8765",
        "http://127.0.0.1:8765",
        "http://kitchen:8765",
        "http://kitchen.local:8765",
        "http://192.168.1.20:8765",
        "https://kitchen.local:8765",
        "HTTP://KITCHEN.LOCAL:8765",
        "http://kitchen.local:8765/",
        " http://kitchen.local:8765 ",
    ],
)
def test_own_host_on_the_served_port_is_allowed(policy: OriginPolicy, origin: str) -> None:
    assert policy.allows(origin, PORT)


def test_default_ports_are_implied(policy: OriginPolicy) -> None:
    assert policy.allows("http://kitchen.local", 80)
    assert policy.allows("https://kitchen.local", 443)
    assert policy.allows("http://kitchen.local:80", 80)
    assert not policy.allows("http://kitchen.local", 443)
    assert not policy.allows("https://kitchen.local", 80)
    assert not policy.allows("http://kitchen.local", PORT)


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example:8765",
        "https://evil.example",
        "http://kitchen.local.evil.example:8765",
        "http://evilkitchen.local:8765",
        "http://192.168.1.21:8765",
        "http://localhost.evil.example:8765",
    ],
)
def test_another_host_is_refused(policy: OriginPolicy, origin: str) -> None:
    assert not policy.allows(origin, PORT)


@pytest.mark.parametrize("origin", ["http://kitchen.local:8080", "http://localhost:80", "https://kitchen.local:8766"])
def test_own_host_on_another_port_is_refused(policy: OriginPolicy, origin: str) -> None:
    assert not policy.allows(origin, PORT)


def test_configured_extra_origins_are_allowed() -> None:
    policy = OriginPolicy(HOSTS, " https://Home.Example.org/ ,http://dash.lan:3000,, ")
    assert policy.allows("https://home.example.org", PORT)
    assert policy.allows("HTTPS://HOME.EXAMPLE.ORG/", PORT)
    assert policy.allows("http://dash.lan:3000", PORT)
    assert policy.allows("http://dash.lan:3000/", 1234)
    assert not policy.allows("http://home.example.org", PORT), "the scheme is part of an origin"
    assert not policy.allows("https://home.example.org:8443", PORT)
    assert not policy.allows("http://dash.lan", PORT)
    assert not policy.allows("", PORT), "empty entries in the list allow nothing"


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        " ",
        "file://",
        "file:///home/user/page.html",
        "http://",
        "https://",
        "http://:8765",
        "http://kitchen.local:notaport",
        "http://kitchen.local:99999",
        "http://kitchen.local:-1",
        "http://kitchen.local: 8765",
        "ws://kitchen.local:8765",
        "chrome-extension://abcdef",
        "kitchen.local:8765",
        "//kitchen.local:8765",
        "http://[::1",
        "http://[kitchen.local]:8765",
        "http://[not-an-address]:8765",
        "\x00",
    ],
)
def test_garbage_origins_are_refused_without_exceptions(policy: OriginPolicy, origin: str) -> None:
    assert policy.allows(origin, PORT) is False


def test_ipv6_literal_origin() -> None:
    policy = OriginPolicy(HOSTS | {"fe80::1"}, "")
    assert policy.allows("http://[::1]:8765", PORT)
    assert policy.allows("http://[FE80::1]:8765", PORT)
    assert policy.allows("http://[::1]", 80)
    assert not policy.allows("http://[::1]:8766", PORT)
    assert not policy.allows("http://[::2]:8765", PORT)


def test_hosts_are_compared_without_case() -> None:
    policy = OriginPolicy({"Kitchen.Local"}, "")
    assert policy.allows("http://KITCHEN.local:8765", PORT)
