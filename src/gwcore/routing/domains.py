"""Choosing the virtual host for a request's host, by Envoy's domain specificity.

Order: an exact domain; then suffix wildcards (``*.example.com``, ``*-api.example.com``),
longest first; then prefix wildcards (``api.*``), longest first; then ``*``.
A wildcard never matches an empty string. Hosts are compared lower-case, without port.
"""

from __future__ import annotations

from collections.abc import Sequence

from gwcore.config.model import VirtualHost


def select_virtual_host_reference(
    virtual_hosts: Sequence[VirtualHost], host: str
) -> VirtualHost | None:
    """The plain statement of the rule, for tests: look at every domain, keep the best."""
    best: tuple[int, int, VirtualHost] | None = None  # (category, -length, vhost)
    for vh in virtual_hosts:
        for domain in vh.domains:
            if domain == "*":
                rank = (3, 0)
            elif domain.startswith("*"):
                suffix = domain[1:]
                if not (host.endswith(suffix) and len(host) > len(suffix)):
                    continue
                rank = (1, -len(suffix))
            elif domain.endswith("*"):
                prefix = domain[:-1]
                if not (host.startswith(prefix) and len(host) > len(prefix)):
                    continue
                rank = (2, -len(prefix))
            elif domain == host:
                rank = (0, 0)
            else:
                continue
            if best is None or rank < best[:2]:
                best = (*rank, vh)
    return best[2] if best else None


class DomainIndex:
    """Compiled domain lookup: one dict per category, probing each wildcard length once."""

    __slots__ = (
        "_default",
        "_exact",
        "_prefix_lengths",
        "_prefixes",
        "_suffix_lengths",
        "_suffixes",
    )

    def __init__(self, virtual_hosts: Sequence[VirtualHost]) -> None:
        self._exact: dict[str, VirtualHost] = {}
        self._suffixes: dict[str, VirtualHost] = {}
        self._prefixes: dict[str, VirtualHost] = {}
        self._default: VirtualHost | None = None
        for vh in virtual_hosts:
            for domain in vh.domains:
                if domain == "*":
                    self._default = self._default or vh
                elif domain.startswith("*"):
                    self._suffixes.setdefault(domain[1:], vh)
                elif domain.endswith("*"):
                    self._prefixes.setdefault(domain[:-1], vh)
                else:
                    self._exact.setdefault(domain, vh)
        self._suffix_lengths = sorted({len(s) for s in self._suffixes}, reverse=True)
        self._prefix_lengths = sorted({len(p) for p in self._prefixes}, reverse=True)

    def select(self, host: str) -> VirtualHost | None:
        """The virtual host for a normalized host (lower-case, no port)."""
        vh = self._exact.get(host)
        if vh is not None:
            return vh
        size = len(host)
        for length in self._suffix_lengths:
            if length < size:
                vh = self._suffixes.get(host[size - length :])
                if vh is not None:
                    return vh
        for length in self._prefix_lengths:
            if length < size:
                vh = self._prefixes.get(host[:length])
                if vh is not None:
                    return vh
        return self._default
