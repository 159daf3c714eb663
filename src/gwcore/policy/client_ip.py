"""The client's IP address, as far as trusted proxies vouch for it.

Forwarding headers (``X-Forwarded-For``, ``Forwarded``, ``X-Real-IP``) are written by
whoever sent the request, so they are only believed when the TCP peer is a trusted
proxy, and then only as far as a chain of trusted proxies reaches: each proxy appends
the address it saw to the *right*, so the list is read right to left, skipping trusted
hops, and the first untrusted address is the client. Anything a client prepends sits
to the left of that point and is never read, so a client cannot choose another
client's address (and many clients behind one trusted load balancer keep distinct
addresses, which keeps per-client rate limits per client).

Addresses are returned as canonical text (``ipaddress``'s ``str``: lower-case,
compressed IPv6); an IPv4-mapped IPv6 address (``::ffff:10.0.0.1``) is its IPv4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from gwcore.config import model as m

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAPPED_V4 = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmap(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# Longer than any address with brackets, port, quotes and some spaces: not an address.
_MAX_ENTRY = 96
# Entries remembered per TrustedProxies (the same few addresses arrive again and again);
# the memory is cleared when full, so a flood of distinct entries costs only time.
_CACHE_SIZE = 4096


def parse_address(text: str) -> Address | None:
    """The IP address in one forwarding-list entry, or ``None`` for anything else.

    Accepted: surrounding spaces and double quotes, ``1.2.3.4``, ``1.2.3.4:80``,
    ``::1``, ``[::1]`` and ``[::1]:80``. IPv4-mapped IPv6 is returned as IPv4. Zone
    identifiers (``fe80::1%eth0``), host names, ``unknown`` and RFC 7239 obfuscated
    identifiers (``_hidden``) are not addresses.
    """
    if len(text) > _MAX_ENTRY:
        return None
    text = text.strip(" \t").strip('"').strip(" \t")
    if not text or "%" in text:
        return None
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            return None
        rest = text[end + 1 :]
        if rest and not (rest[0] == ":" and rest[1:].isdigit() and rest[1:].isascii()):
            return None
        text = text[1:end]
        if ":" not in text:  # brackets are for IPv6 only
            return None
    elif text.count(":") == 1:  # IPv4 with a port
        text, _, port = text.partition(":")
        if not (port.isdigit() and port.isascii()):
            return None
    try:
        return _unmap(ipaddress.ip_address(text))
    except ValueError:
        return None


class TrustedProxies:
    """A set of networks whose addresses are trusted to forward client addresses.

    ``address in proxies`` takes address text (as :func:`parse_address` reads it); an
    IPv4-mapped IPv6 address is checked as its IPv4, and IPv4-mapped IPv6 networks in
    the configuration (``::ffff:10.0.0.0/104``) are read as their IPv4 networks.
    Anything that is not an address is not trusted.
    """

    __slots__ = ("_seen", "_v4", "_v6")

    def __init__(self, networks: Iterable[m.IpNetwork | str]) -> None:
        v4: list[tuple[int, int]] = []
        v6: list[tuple[int, int]] = []
        for item in networks:
            network = ipaddress.ip_network(item, strict=False) if isinstance(item, str) else item
            if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED_V4):
                base = network.network_address.ipv4_mapped
                assert base is not None
                network = ipaddress.IPv4Network((base, network.prefixlen - 96))
            # (network address, mask) as integers: membership is one AND and compare.
            pair = (int(network.network_address), int(network.netmask))
            (v4 if network.version == 4 else v6).append(pair)
        self._v4 = tuple(v4)
        self._v6 = tuple(v6)
        self._seen: dict[str, tuple[str, bool] | None] = {}

    def __bool__(self) -> bool:
        return bool(self._v4 or self._v6)

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` (text) is inside a trusted network; garbage is not."""
        if isinstance(address, str):
            found = self.classify(address)
            return found is not None and found[1]
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return self.trusts(_unmap(address))
        return False

    def trusts(self, address: Address) -> bool:
        """Whether a parsed (and unmapped) address is in a trusted network."""
        value = int(address)
        for network, mask in self._v4 if address.version == 4 else self._v6:
            if value & mask == network:
                return True
        return False

    def classify(self, text: str) -> tuple[str, bool] | None:
        """``(canonical address, trusted)`` for an address entry (see
        :func:`parse_address`), or ``None`` when it is not an address. Remembered."""
        seen = self._seen
        try:
            return seen[text]
        except KeyError:
            pass
        address = parse_address(text)
        result = None if address is None else (str(address), self.trusts(address))
        if len(text) <= _MAX_ENTRY:
            if len(seen) >= _CACHE_SIZE:
                seen.clear()
            seen[text] = result
        return result


def _forwarded_for(values: list[str]) -> list[str]:
    """The ``for=`` value of each element of RFC 7239 ``Forwarded`` fields, in order.

    Elements are separated by commas and their pairs by semicolons, outside quoted
    strings. An element without exactly one non-empty ``for=`` gives ``unknown`` (garbage).
    """
    entries: list[str] = []
    for value in values:
        elements: list[list[str]] = [[]]
        pair: list[str] = []
        quoted = escaped = False
        for ch in value:
            if quoted:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                    continue
                elif ch == '"':
                    quoted = False
                pair.append(ch)
            elif ch == '"':
                quoted = True
                pair.append(ch)
            elif ch == ";":
                elements[-1].append("".join(pair))
                pair = []
            elif ch == ",":
                elements[-1].append("".join(pair))
                pair = []
                elements.append([])
            else:
                pair.append(ch)
        elements[-1].append("".join(pair))
        for pairs in elements:
            if all(not p.strip() for p in pairs):
                continue  # an empty list element
            found = [
                v for k, _, v in (p.partition("=") for p in pairs) if k.strip().lower() == "for"
            ]
            value = found[0] if len(found) == 1 else ""
            entries.append(value if value.strip(' \t"') else "unknown")
    return entries


def _walk(entries: list[str], peer: str, trusted: TrustedProxies) -> str:
    """Right to left through ``entries``: the first untrusted address is the client; a
    garbage entry stops the walk at the last verified address; all trusted gives the
    left-most. Empty list elements are skipped."""
    last = peer
    for entry in reversed(entries):
        if not entry.strip(" \t"):
            continue
        found = trusted.classify(entry)
        if found is None:
            return last
        last, is_trusted = found
        if not is_trusted:
            return last
    return last


def client_ip(peer: str, headers: Sequence[tuple[str, str]], trusted: TrustedProxies) -> str:
    """The client's address for a request that came from TCP peer ``peer``.

    * The peer is not trusted: the peer (forwarding headers are ignored).
    * The peer is trusted and sent ``X-Forwarded-For`` (all lines, in order, as one
      comma-separated list): walk it right to left, skipping trusted addresses; the
      first untrusted address is the client. A garbage entry stops the walk: the client
      is the last address verified (the trusted hop that forwarded the garbage, or the
      peer). If every entry is trusted, the left-most one.
    * Else ``Forwarded`` (RFC 7239 ``for=`` values; ``unknown`` and obfuscated
      identifiers are garbage), walked the same way.
    * Else ``X-Real-IP``: a single valid address is the client; several values or
      garbage give the peer.
    * Else the peer.

    Header names are matched case-insensitively. A peer that is not an IP address
    (a Unix socket path) is returned unchanged. Cheap when nobody is trusted: call it
    for every request, it also gives the peer's canonical text.
    """
    found = trusted.classify(peer)
    if found is None:
        return peer
    canonical, is_trusted = found
    if not is_trusted:
        return canonical
    xff: list[str] = []
    forwarded: list[str] = []
    real: list[str] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == "x-forwarded-for":
            xff.append(value)
        elif lowered == "forwarded":
            forwarded.append(value)
        elif lowered == "x-real-ip":
            real.append(value)
    if xff:
        return _walk(",".join(xff).split(","), canonical, trusted)
    if forwarded:
        return _walk(_forwarded_for(forwarded), canonical, trusted)
    if len(real) == 1 and "," not in real[0]:
        found = trusted.classify(real[0])
        if found is not None:
            return found[0]
    return canonical
