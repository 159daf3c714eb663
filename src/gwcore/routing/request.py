"""What the router looks at: a request head, plus claims and body once known."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """A request as the router sees it.

    ``path`` is the request target as received (``/a/b?x=1``); the router matches
    paths without the query string and fragment. ``host`` is the authority (Host
    header or ``:authority``); when empty, the first ``host`` header is used.
    ``headers`` are (name, value) pairs in any case; repeated names are several
    values. ``claims`` are *verified* JWT claims, or ``None`` while not yet known;
    ``{}`` means "no verified token". ``body`` is ``None`` until it has been read.
    """

    method: str
    path: str
    host: str = ""
    headers: Sequence[tuple[str, str]] = ()
    claims: Mapping[str, Any] | None = None
    body: bytes | None = None
    scheme: str = "http"

    def with_claims(self, claims: Mapping[str, Any]) -> RouteRequest:
        """A copy carrying verified ``claims``."""
        return replace(self, claims=claims)

    def with_body(self, body: bytes) -> RouteRequest:
        """A copy carrying the request ``body``."""
        return replace(self, body=body)


def normalize_host(authority: str) -> str:
    """Lower-case the host and drop a port: ``API.example.com:8080`` -> ``api.example.com``.

    Bracketed IPv6 literals keep their brackets (``[::1]:80`` -> ``[::1]``).
    """
    host = authority.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end >= 0 else host
    colon = host.rfind(":")
    if colon >= 0 and (host[colon + 1 :].isdigit() or colon == len(host) - 1):
        return host[:colon]
    return host


class RequestView:
    """Per-evaluation parsed parts of a :class:`RouteRequest`, computed on first use."""

    __slots__ = (
        "_content_type",
        "_graphql",
        "_headers",
        "_query",
        "body",
        "claims",
        "host",
        "method",
        "path",
        "query_string",
        "request",
    )

    def __init__(self, request: RouteRequest) -> None:
        self.request = request
        self.method = request.method
        # path ? query # fragment: the path ends at the first '?' or '#'.
        path, _, query = request.path.partition("?")
        path, hash_mark, _ = path.partition("#")
        self.path = path
        self.query_string = "" if hash_mark else query.partition("#")[0]
        self.claims = request.claims
        self.body = request.body
        self._headers: dict[str, list[str]] | None = None
        self._query: dict[str, list[str]] | None = None
        self._content_type: str | bool | None = False
        self._graphql: tuple[str, str | None] | bool | None = False
        authority = request.host
        if not authority:
            values = self.header_values("host")
            authority = values[0] if values else ""
        self.host = normalize_host(authority)

    def header_values(self, name: str) -> list[str]:
        """All values of a header (``name`` lower-case); pseudo-headers come from the request."""
        if self._headers is None:
            headers: dict[str, list[str]] = {}
            for key, value in self.request.headers:
                headers.setdefault(key.lower(), []).append(value)
            self._headers = headers
        if name[:1] == ":":
            return self._pseudo(name)
        return self._headers.get(name, [])

    def _pseudo(self, name: str) -> list[str]:
        if name == ":method":
            return [self.method]
        if name == ":path":
            return [self.request.path]
        if name == ":authority":
            return [self.request.host] if self.request.host else self.header_values("host")
        if name == ":scheme":
            return [self.request.scheme]
        return []

    def query_values(self, name: str) -> list[str]:
        if self._query is None:
            query: dict[str, list[str]] = {}
            for key, value in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(key, []).append(value)
            self._query = query
        return self._query.get(name, [])

    @property
    def content_type(self) -> str | None:
        """The media type of the first ``content-type`` value, lower-case, no parameters."""
        if self._content_type is False:
            values = self.header_values("content-type")
            self._content_type = values[0].split(";", 1)[0].strip().lower() if values else None
        assert self._content_type is not True
        return self._content_type

    def graphql_operation(self) -> tuple[str, str | None] | None:
        """(operation type, operation name) of the request's GraphQL operation, or None."""
        if self._graphql is False:
            from gwcore.routing.graphql import select_operation

            self._graphql = select_operation(self)
        assert self._graphql is not True
        return self._graphql
