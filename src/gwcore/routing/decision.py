"""What the router answers: a route, no route, or "tell me more first"."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gwcore.config.model import Route, VirtualHost


@dataclass(frozen=True, slots=True)
class Matched:
    """``route`` (at ``index`` in ``virtual_host.routes``) is the first route that matches."""

    route: Route
    virtual_host: VirtualHost
    index: int

    def __repr__(self) -> str:
        return _short("Matched", self.route, self.virtual_host, self.index)


@dataclass(frozen=True, slots=True)
class NoRoute:
    """No route matches. ``virtual_host`` is None when no virtual host serves the host."""

    virtual_host: VirtualHost | None

    def __repr__(self) -> str:
        name = self.virtual_host.name if self.virtual_host else None
        return f"NoRoute(virtual_host={name!r})"


@dataclass(frozen=True, slots=True)
class NeedClaims:
    """The earliest route still possible (``route``) depends on JWT claims.

    Verify the request's token, then call :meth:`with_claims` with the *verified*
    claims (``{}`` when there is no valid token) to continue where routing stopped.
    """

    route: Route
    virtual_host: VirtualHost
    index: int
    _resume: Callable[[Mapping[str, Any]], Decision] = field(repr=False, compare=False)

    def with_claims(self, claims: Mapping[str, Any]) -> Decision:
        """Continue routing from this route with the verified ``claims``."""
        return self._resume(claims)

    def __repr__(self) -> str:
        return _short("NeedClaims", self.route, self.virtual_host, self.index)


@dataclass(frozen=True, slots=True)
class NeedBody:
    """The earliest route still possible (``route``) needs the request body (GraphQL).

    Read the body (bounded), then call :meth:`with_body` to continue.
    """

    route: Route
    virtual_host: VirtualHost
    index: int
    _resume: Callable[[bytes], Decision] = field(repr=False, compare=False)

    def with_body(self, body: bytes) -> Decision:
        """Continue routing from this route with the whole request ``body``."""
        return self._resume(body)

    def __repr__(self) -> str:
        return _short("NeedBody", self.route, self.virtual_host, self.index)


def _short(kind: str, route: Route, vhost: VirtualHost, index: int) -> str:
    return f"{kind}(route={route.label!r}, virtual_host={vhost.name!r}, index={index})"


Decision = Matched | NoRoute | NeedClaims | NeedBody
