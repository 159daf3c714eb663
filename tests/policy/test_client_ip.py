"""The client IP behind trusted proxies, and the ways a client could try to spoof it."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.policy.client_ip import TrustedProxies, client_ip, parse_address

LB = "10.0.0.5"  # the trusted load balancer in front of the gateway
TRUSTED = TrustedProxies(["10.0.0.0/8", ipaddress.ip_network("2001:db8:ff::/48")])


def _ip(peer: str, *headers: tuple[str, str]) -> str:
    return client_ip(peer, list(headers), TRUSTED)


# ------------------------------------------------------------------ membership


def test_trusted_proxies_membership() -> None:
    assert "10.1.2.3" in TRUSTED
    assert "::ffff:10.1.2.3" in TRUSTED  # IPv4-mapped IPv6 counts as its IPv4
    assert "2001:db8:ff::1" in TRUSTED
    assert "[2001:db8:ff::1]:443" in TRUSTED
    assert "11.0.0.1" not in TRUSTED
    assert "2001:db8:fe::1" not in TRUSTED
    for garbage in ("", "unknown", "10.0.0", "example.com", "10.0.0.1/8", None, 167772161, b"x"):
        assert garbage not in TRUSTED
    assert ipaddress.ip_address("10.9.9.9") in TRUSTED


def test_mapped_ipv6_network_in_config_is_read_as_ipv4() -> None:
    proxies = TrustedProxies(["::ffff:192.168.0.0/112"])
    assert "192.168.3.4" in proxies
    assert "192.169.0.1" not in proxies
    assert not TrustedProxies([])
    assert TrustedProxies(["127.0.0.1"])


def test_parse_address_accepts_ports_brackets_quotes_and_spaces() -> None:
    cases = {
        " 1.2.3.4 ": "1.2.3.4",
        "1.2.3.4:8080": "1.2.3.4",
        '"1.2.3.4:80"': "1.2.3.4",
        "[::1]:80": "::1",
        '"[2001:DB8::0:1]"': "2001:db8::1",
        "2001:db8:0:0::1": "2001:db8::1",
        "::ffff:1.2.3.4": "1.2.3.4",
    }
    for text, want in cases.items():
        assert str(parse_address(text)) == want, text
    garbage = [
        "",
        "unknown",
        "_hidden",
        "1.2.3.4:",
        "1.2.3.4:http",
        "[1.2.3.4]",
        "[::1",
        "[::1]x",
        "fe80::1%eth0",
        "1.2.3.4.5",
        "x" * 200,
    ]
    for text in garbage:
        assert parse_address(text) is None, text


# ------------------------------------------------------------------ spoofing


def test_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    peer = "198.51.100.9"
    assert _ip(peer, ("x-forwarded-for", "1.1.1.1")) == peer
    assert _ip(peer, ("x-real-ip", "1.1.1.1")) == peer
    assert _ip(peer, ("forwarded", "for=1.1.1.1")) == peer
    assert _ip(peer, ("X-Forwarded-For", "10.0.0.1")) == peer  # even a "trusted" address


def test_many_clients_behind_a_trusted_lb_keep_distinct_addresses() -> None:
    """The 429 false positive: if the LB's address were the client, every client behind
    it would share one rate-limit bucket."""
    clients = [f"203.0.113.{i}" for i in range(1, 50)]
    seen = {_ip(LB, ("x-forwarded-for", c)) for c in clients}
    assert seen == set(clients)


def test_client_cannot_pick_someone_elses_address_by_prepending() -> None:
    # The client sends "X-Forwarded-For: 198.51.100.77"; the LB appends what it saw.
    assert _ip(LB, ("x-forwarded-for", "198.51.100.77, 203.0.113.9")) == "203.0.113.9"
    # Prepending a trusted-looking address does not help either.
    assert _ip(LB, ("x-forwarded-for", "10.0.0.1, 203.0.113.9")) == "203.0.113.9"
    # Nor does garbage, nor many entries.
    spoof = ", ".join(["1.1.1.1"] * 50 + ["not-an-ip", "203.0.113.9"])
    assert _ip(LB, ("x-forwarded-for", spoof)) == "203.0.113.9"


def test_chain_of_trusted_proxies_is_skipped() -> None:
    header = ("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.2.0.1, 10.3.0.1")
    assert _ip(LB, header) == "203.0.113.9"


def test_all_trusted_gives_the_left_most() -> None:
    assert _ip(LB, ("x-forwarded-for", "10.9.0.1, 10.8.0.1")) == "10.9.0.1"


def test_garbage_stops_the_walk_at_the_last_verified_hop() -> None:
    # The right-most entry is garbage: only the peer is verified.
    assert _ip(LB, ("x-forwarded-for", "203.0.113.9, bogus")) == LB
    # A trusted hop forwarded garbage: that hop is the last verified address.
    assert _ip(LB, ("x-forwarded-for", "203.0.113.9, bogus, 10.7.0.1")) == "10.7.0.1"
    assert _ip(LB, ("x-forwarded-for", "unknown")) == LB


def test_multiple_xff_lines_are_one_list_in_order() -> None:
    assert (
        _ip(LB, ("x-forwarded-for", "198.51.100.1"), ("x-forwarded-for", "203.0.113.9, 10.1.1.1"))
        == "203.0.113.9"
    )
    # The lines are merged in order: the last line is the nearest hop.
    assert (
        _ip(LB, ("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "198.51.100.1"))
        == "198.51.100.1"
    )


def test_entries_with_ports_quotes_and_empty_elements() -> None:
    assert _ip(LB, ("x-forwarded-for", ' "203.0.113.9:5555" ,, ')) == "203.0.113.9"
    assert _ip(LB, ("x-forwarded-for", "[2001:db8::7]:443, 10.0.0.1")) == "2001:db8::7"
    assert _ip(LB, ("x-forwarded-for", "")) == LB


def test_ipv6_and_mapped_addresses_are_canonical() -> None:
    assert _ip("2001:db8:ff::2", ("x-forwarded-for", "2001:DB8:0::9")) == "2001:db8::9"
    assert _ip("::ffff:10.0.0.5", ("x-forwarded-for", "::ffff:203.0.113.9")) == "203.0.113.9"
    assert _ip("::ffff:198.51.100.9") == "198.51.100.9"
    assert _ip("2001:0DB8::1") == "2001:db8::1"


def test_forwarded_header_is_used_without_xff() -> None:
    value = 'for=198.51.100.1;proto=https, for="[2001:db8::7]:4711";by=10.0.0.5, for=10.0.0.9'
    assert _ip(LB, ("forwarded", value)) == "2001:db8::7"
    assert _ip(LB, ("Forwarded", "For=203.0.113.9")) == "203.0.113.9"
    # "unknown" and obfuscated identifiers are garbage: the walk stops.
    assert _ip(LB, ("forwarded", "for=203.0.113.9, for=unknown")) == LB
    assert _ip(LB, ("forwarded", "for=203.0.113.9, for=_hidden, for=10.4.0.1")) == "10.4.0.1"
    # An element without for= is garbage too.
    assert _ip(LB, ("forwarded", "for=203.0.113.9, proto=http")) == LB
    assert _ip(LB, ("forwarded", "for=203.0.113.9, for=")) == LB
    assert _ip(LB, ("forwarded", "for=203.0.113.9, for=1.1.1.1;for=10.0.0.1")) == LB
    # Quoted commas and semicolons do not split.
    assert _ip(LB, ("forwarded", 'for=203.0.113.9;ext="a,b;c\\"d"')) == "203.0.113.9"
    # XFF wins over Forwarded.
    assert _ip(LB, ("forwarded", "for=1.1.1.1"), ("x-forwarded-for", "203.0.113.9")) == (
        "203.0.113.9"
    )


def test_x_real_ip_is_the_last_resort() -> None:
    assert _ip(LB, ("x-real-ip", "203.0.113.9")) == "203.0.113.9"
    assert _ip(LB, ("x-real-ip", "[2001:db8::1]:80")) == "2001:db8::1"
    assert _ip(LB, ("x-real-ip", "203.0.113.9, 1.1.1.1")) == LB
    assert _ip(LB, ("x-real-ip", "203.0.113.9"), ("x-real-ip", "1.1.1.1")) == LB
    assert _ip(LB, ("x-real-ip", "garbage")) == LB
    assert _ip(LB, ("forwarded", "for=198.51.100.1"), ("x-real-ip", "1.1.1.1")) == "198.51.100.1"
    assert _ip(LB) == LB


def test_peer_that_is_not_an_ip_is_returned_unchanged() -> None:
    assert _ip("/run/gw.sock", ("x-forwarded-for", "1.1.1.1")) == "/run/gw.sock"


# ------------------------------------------------------------------ properties

_public_v4 = st.builds(
    lambda n: str(ipaddress.IPv4Address(n)),
    st.integers(int(ipaddress.IPv4Address("11.0.0.0")), int(ipaddress.IPv4Address("99.0.0.0"))),
)
_trusted_v4 = st.builds(
    lambda n: f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}", st.integers(0, 2**24 - 1)
)
_junk = st.one_of(
    _public_v4,
    _trusted_v4,
    st.text(st.characters(codec="ascii", exclude_characters=","), max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(
    attacker=st.lists(_junk, max_size=6),
    client=_public_v4,
    hops=st.lists(_trusted_v4, max_size=3),
    split=st.integers(0, 10),
)
def test_whatever_the_client_prepends_the_answer_is_what_the_first_proxy_saw(
    attacker: list[str], client: str, hops: list[str], split: int
) -> None:
    """The client controls everything left of its own address (which the first trusted
    proxy appended); trusted proxies append their peers. The result is always the
    client's real address, however the list is split over header lines."""
    entries = [*attacker, client, *hops]
    cut = min(split, len(entries))
    lines = [", ".join(entries[:cut]), ", ".join(entries[cut:])]
    headers = [("x-forwarded-for", line) for line in lines if line]
    assert client_ip(LB, headers, TRUSTED) == client


@settings(max_examples=200, deadline=None)
@given(
    peer=_public_v4,
    headers=st.lists(
        st.tuples(st.sampled_from(["x-forwarded-for", "x-real-ip", "forwarded"]), _junk),
        max_size=4,
    ),
)
def test_untrusted_peer_is_never_overridden(peer: str, headers: list[tuple[str, str]]) -> None:
    assert client_ip(peer, headers, TRUSTED) == peer


@pytest.mark.parametrize("peer", [LB, "198.51.100.9"])
@settings(max_examples=100, deadline=None)
@given(value=st.text(max_size=40))
def test_any_header_value_gives_a_valid_address(peer: str, value: str) -> None:
    for name in ("x-forwarded-for", "forwarded", "x-real-ip"):
        result = client_ip(peer, [(name, value)], TRUSTED)
        assert str(ipaddress.ip_address(result)) == result
