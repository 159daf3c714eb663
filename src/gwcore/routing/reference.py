"""The reference router: a plain linear scan, written to be obviously right.

It is the specification the compiled tree is tested against: pick the virtual
host, then try each route in declaration order and take the first that matches.
It is also what :func:`explain` uses to say why each route did or did not match.
Never used on the request path of the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gwcore.config import model as m
from gwcore.config.claims import claim_values
from gwcore.routing.decision import Decision, Matched, NeedBody, NeedClaims, NoRoute
from gwcore.routing.domains import select_virtual_host_reference
from gwcore.routing.matchers import Failure, Verdict, evaluate_route
from gwcore.routing.request import RequestView, RouteRequest


def reference_match(config: m.GatewayConfig, request: RouteRequest) -> Decision:
    """The first route, in declaration order, of the request's virtual host that matches."""
    view = RequestView(request)
    vhost = select_virtual_host_reference(config.virtual_hosts, view.host)
    if vhost is None:
        return NoRoute(None)
    for index, route in enumerate(vhost.routes):
        verdict = evaluate_route(route.match, view)
        if verdict is Verdict.MATCH:
            return Matched(route, vhost, index)
        if verdict is Verdict.NEED_CLAIMS:
            return NeedClaims(route, vhost, index, _rerun_with_claims(config, request))
        if verdict is Verdict.NEED_BODY:
            return NeedBody(route, vhost, index, _rerun_with_body(config, request))
    return NoRoute(vhost)


def _rerun_with_claims(config: m.GatewayConfig, request: RouteRequest) -> Any:
    def resume(claims: Mapping[str, Any]) -> Decision:
        return reference_match(config, request.with_claims(claims))

    return resume


def _rerun_with_body(config: m.GatewayConfig, request: RouteRequest) -> Any:
    def resume(body: bytes) -> Decision:
        return reference_match(config, request.with_body(body))

    return resume


Outcome = Literal["matched", "failed", "needs_claims", "needs_body", "not_reached"]


@dataclass(frozen=True, slots=True)
class RouteVerdict:
    """What happened to one route: ``reason`` says which condition failed and why."""

    index: int
    route: m.Route
    outcome: Outcome
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a request was routed as it was: the virtual host and each route's verdict."""

    host: str
    virtual_host: m.VirtualHost | None
    verdicts: tuple[RouteVerdict, ...]
    decision: Decision

    def __str__(self) -> str:
        lines = []
        if self.virtual_host is None:
            lines.append(f"host {self.host!r}: no virtual host serves it")
        else:
            vh = self.virtual_host
            lines.append(
                f"host {self.host!r}: virtual host {vh.name!r} (domains {list(vh.domains)})"
            )
        for v in self.verdicts:
            label = f"routes[{v.index}]" + (f" {v.route.name!r}" if v.route.name else "")
            if v.outcome == "matched":
                lines.append(f"  {label}: MATCHED -> {describe_action(v.route.action)}")
            elif v.outcome == "failed":
                lines.append(f"  {label}: no: {v.reason}")
            elif v.outcome == "not_reached":
                lines.append(f"  {label}: not reached (an earlier route won)")
            else:
                lines.append(f"  {label}: waiting: {v.reason}")
        decision = self.decision
        if isinstance(decision, NoRoute):
            lines.append("result: no route (404)")
        elif isinstance(decision, Matched):
            lines.append(
                f"result: {decision.route.label} -> {describe_action(decision.route.action)}"
            )
        return "\n".join(lines)


def describe_action(action: m.RouteAction) -> str:
    if isinstance(action, m.DirectResponseAction):
        return f"direct response {action.status}"
    if isinstance(action, m.RedirectAction):
        return f"redirect {action.response_code}"
    if action.cluster is not None:
        target = f"cluster {action.cluster}"
    else:
        target = "weighted clusters " + ", ".join(
            f"{w.name}={w.weight}" for w in action.weighted_clusters
        )
    timeout = f", timeout {action.timeout:g}s" if action.timeout else ", no timeout"
    return target + timeout


def _shown(values: list[str]) -> str:
    if not values:
        return "absent"
    shown = ", ".join(repr(v if len(v) <= 60 else v[:57] + "...") for v in values[:3])
    return "has " + shown + (f" (+{len(values) - 3} more)" if len(values) > 3 else "")


def describe_failure(failure: Failure, view: RequestView) -> str:
    """A sentence naming the failed condition, where it is, and what the request had."""
    if isinstance(failure, str):
        if failure == "methods":
            return f"method {view.method!r} is not listed"
        return f"content type {view.content_type!r} is not listed"
    where = f" [{failure.location}]" if failure.location else ""
    if isinstance(failure, m.PathMatcher):
        observed = f"path {view.path!r}"
    elif isinstance(failure, m.HeaderMatcher):
        observed = "request " + _shown(view.header_values(failure.name))
    elif isinstance(failure, m.QueryParameterMatcher):
        observed = "request " + _shown(view.query_values(failure.name))
    elif isinstance(failure, m.ClaimMatcher):
        values = claim_values(view.claims or {}, failure.path)
        observed = "token " + ("lacks the claim" if values is None else _shown(values))
    elif isinstance(failure, m.GrpcMatcher):
        observed = f"content type {view.content_type!r}, path {view.path!r}"
    else:
        op = view.graphql_operation()
        observed = "no selectable operation" if op is None else f"operation {op[0]} {op[1]!r}"
    return f"{failure.describe()}{where}: {observed}"


def explain(config: m.GatewayConfig, request: RouteRequest) -> Explanation:
    """Each route of the chosen virtual host in order: matched, failed (and why), or not reached."""
    view = RequestView(request)
    vhost = select_virtual_host_reference(config.virtual_hosts, view.host)
    if vhost is None:
        return Explanation(view.host, None, (), NoRoute(None))
    verdicts: list[RouteVerdict] = []
    decided: Decision | None = None
    for index, route in enumerate(vhost.routes):
        if decided is not None:
            verdicts.append(RouteVerdict(index, route, "not_reached"))
            continue
        verdict = evaluate_route(route.match, view)
        if verdict is Verdict.MATCH:
            decided = Matched(route, vhost, index)
            verdicts.append(RouteVerdict(index, route, "matched"))
        elif verdict is Verdict.NEED_CLAIMS:
            decided = NeedClaims(route, vhost, index, _rerun_with_claims(config, request))
            verdicts.append(RouteVerdict(index, route, "needs_claims", "needs verified JWT claims"))
        elif verdict is Verdict.NEED_BODY:
            decided = NeedBody(route, vhost, index, _rerun_with_body(config, request))
            verdicts.append(RouteVerdict(index, route, "needs_body", "needs the request body"))
        else:
            verdicts.append(RouteVerdict(index, route, "failed", describe_failure(verdict, view)))
    return Explanation(view.host, vhost, tuple(verdicts), decided or NoRoute(vhost))
