"""The ``gwcore`` command: validate a config, ask which route a request takes, serve.

``gwcore check CONFIG`` prints one summary line (exit 0) or every located error
(exit 1). ``gwcore route CONFIG ...`` routes one request (or a JSON-lines file of
them) with the compiled table and prints why, or a small JSON answer.
``gwcore serve CONFIG [--listen HOST:PORT] [--workers N] [--backend trio|asyncio]`` runs
the gateway with the trio adapter, or the asyncio one (imported only then), until
SIGTERM (drain) or SIGINT. Exit codes:
0 done, 1 invalid config or input file (or cannot listen), 2 bad command line.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import io
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gwcore.config import ConfigError, GatewayConfig, load_config_file
from gwcore.config import model as m
from gwcore.policy.jwt import JwtAuthenticator, JwtError, KeysNeeded, unverified_issuer
from gwcore.routing import (
    Decision,
    Explanation,
    Matched,
    NeedBody,
    NeedClaims,
    NoRoute,
    RouteRequest,
    RouteTable,
)
from gwcore.routing.matchers import Verdict, evaluate_route
from gwcore.routing.request import RequestView

PROG = "gwcore"
BACKENDS = ("trio", "asyncio")


# ------------------------------------------------------------------ arguments


def _header_arg(text: str) -> tuple[str, str]:
    """``-H 'name: value'`` -> (name, value)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"expected 'name: value', got {text!r} (no colon)")
    if not name:
        raise argparse.ArgumentTypeError(
            f"expected 'name: value', got {text!r}; pseudo-headers come from "
            "--method, --path and --host"
        )
    problem = _header_name_problem(name)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} in {text!r}")
    return name, value.strip()


def _header_name_problem(name: str) -> str | None:
    if not name:
        return "empty header name"
    if name.startswith(":"):
        return f"pseudo-header {name!r}: use --method, --path and --host (or method/path/host)"
    if any(c.isspace() or c == ":" for c in name):
        return f"invalid header name {name!r}"
    return None


def _claims_arg(text: str) -> dict[str, Any]:
    try:
        claims = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(claims, dict):
        raise argparse.ArgumentTypeError(
            f'expected a JSON object such as \'{{"role": "admin"}}\', got {text!r}'
        )
    return claims


def _draw_arg(text: str) -> float:
    try:
        draw = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= draw < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return draw


def _listen_arg(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6; an empty host means all interfaces)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 127.0.0.1:8080, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write an IPv6 address in brackets: [{host}]:{port}")
    return host or "0.0.0.0", int(port)


def _workers_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog=PROG, description="gwcore: validate gateway configs and explain routing decisions."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser(
        "check", help="validate a config file", description="Validate a gateway config file."
    )
    check.add_argument("config", metavar="CONFIG", help="YAML config file")

    route = commands.add_parser(
        "route",
        help="show which route a request takes, and why",
        description=(
            "Route a request with the compiled route table. Without --claims the request "
            "has no verified token (claims {}); without --body its body is empty."
        ),
    )
    route.add_argument("config", metavar="CONFIG", help="YAML config file")
    route.add_argument("--method", "-X", help="request method (default GET)")
    route.add_argument("--path", help="request target, query string included (e.g. /v2/x?a=1)")
    route.add_argument("--host", help="authority (Host header), e.g. api.example.com")
    route.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_header_arg,
        metavar="'NAME: VALUE'",
        help="a request header (repeatable)",
    )
    identity = route.add_mutually_exclusive_group()
    identity.add_argument(
        "--claims",
        type=_claims_arg,
        metavar="JSON",
        help='verified JWT claims as a JSON object, e.g. \'{"role": "admin"}\'',
    )
    identity.add_argument(
        "--token",
        metavar="JWT",
        help=(
            "a JWT, verified as the gateway would (by the provider whose issuer is its iss; "
            "inline or file keys), whose claims then route the request"
        ),
    )
    route.add_argument(
        "--now",
        type=float,
        metavar="UNIX_TIME",
        help="the time --token is checked at (exp, nbf, iat); default: the current time",
    )
    body = route.add_mutually_exclusive_group()
    body.add_argument("--body", metavar="TEXT", help="request body (UTF-8 text)")
    body.add_argument("--body-file", metavar="FILE", help="read the request body from FILE")
    route.add_argument(
        "--json",
        action="store_true",
        help='print {"route": ..., "cluster": ..., "status": ...} instead of the explanation',
    )
    route.add_argument(
        "--requests",
        metavar="FILE.jsonl",
        help="route every request of a JSON-lines file, printing one JSON answer per line",
    )
    route.add_argument(
        "--weight-draw",
        type=_draw_arg,
        default=0.0,
        metavar="FLOAT",
        help="the uniform draw in [0, 1) that picks among weighted clusters (default 0.0)",
    )

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description=(
            "Run the gateway on the config's listeners (trio adapter by default). SIGTERM drains: "
            "stop accepting, let requests in flight finish (up to 10 s); SIGINT stops at once."
        ),
    )
    serve.add_argument("config", metavar="CONFIG", help="YAML config file")
    serve.add_argument(
        "--listen",
        type=_listen_arg,
        metavar="HOST:PORT",
        help="listen here instead of the (first) listener's address; port 0 picks a free one",
    )
    serve.add_argument(
        "--workers",
        type=_workers_arg,
        default=1,
        metavar="N",
        help="worker processes sharing the port with SO_REUSEPORT (default 1)",
    )
    serve.add_argument(
        "--backend",
        choices=BACKENDS,
        help="the I/O adapter: trio (the default, unless $GWCORE_BACKEND names one) or "
        "asyncio (on uvloop when installed)",
    )
    return parser, route


# -------------------------------------------------------------------- output


def _tolerant_streams() -> None:
    """Never fail on an odd terminal encoding: escape what it cannot show."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _error(message: str) -> None:
    print(message, file=sys.stderr)


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config_file(path)
    except ConfigError as exc:
        _error(str(exc))
        return None


# --------------------------------------------------------------------- check


def _check(path: str) -> int:
    config = _load(path)
    if config is None:
        return 1
    print(
        f"{path}: OK — "
        + ", ".join(
            (
                _plural(len(config.virtual_hosts), "virtual host"),
                _plural(config.route_count, "route"),
                _plural(len(config.clusters), "cluster"),
                _plural(len(config.listeners), "listener"),
            )
        )
    )
    return 0


# --------------------------------------------------------------------- route


def _settle(decision: Decision) -> Matched | NoRoute:
    """Claims and body are always given here; resume defensively if asked anyway."""
    while isinstance(decision, NeedClaims | NeedBody):
        if isinstance(decision, NeedClaims):
            decision = decision.with_claims({})
        else:
            decision = decision.with_body(b"")
    return decision


def _answer(decision: Decision, draw: float = 0.0) -> dict[str, Any]:
    """The ``--json`` answer: route name (null when unnamed or no route), cluster, local status."""
    settled = _settle(decision)
    if isinstance(settled, NoRoute):
        return {"route": None, "cluster": None, "status": 404}
    route = settled.route
    action = route.action
    cluster: str | None = None
    status: int | None = None
    if isinstance(action, m.ForwardAction):
        cluster = action.pick_cluster(draw)
    elif isinstance(action, m.DirectResponseAction):
        status = action.status
    else:
        status = action.response_code
    return {"route": route.name, "cluster": cluster, "status": status}


def _notes(explanation: Explanation, request: RouteRequest, args: argparse.Namespace) -> list[str]:
    """Say so when a route's verdict rested on the assumed empty claims or body."""
    claim_routes: list[str] = []
    body_routes: list[str] = []
    for verdict in explanation.verdicts:
        if verdict.outcome == "not_reached":
            continue
        label = f"routes[{verdict.index}]"
        match = verdict.route.match
        if args.claims is None and match.needs_claims:
            unknown = RequestView(replace(request, claims=None))
            if evaluate_route(match, unknown) is Verdict.NEED_CLAIMS:
                claim_routes.append(label)
        if args.body is None and args.body_file is None and match.needs_body:
            unread = RequestView(replace(request, body=None))
            if evaluate_route(match, unread) is Verdict.NEED_BODY:
                body_routes.append(label)
    notes = []
    if claim_routes:
        notes.append(
            "note: no --claims given, so the request has no verified token (claims {}); "
            f"{', '.join(claim_routes)} needed claims"
        )
    if body_routes:
        notes.append(
            "note: no --body given, so the request body is empty; "
            f"{', '.join(body_routes)} needed the body"
        )
    return notes


_REQUEST_KEYS = ("method", "path", "host", "headers", "claims", "body")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return "a number"


def _request_from_json(text: str) -> RouteRequest | str:
    """One JSON-lines request, or what is wrong with it."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(data, dict):
        return f"expected a JSON object, got {_json_kind(data)}"
    problems: list[str] = []
    for key in data:
        if key not in _REQUEST_KEYS:
            close = difflib.get_close_matches(key, _REQUEST_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown key {key!r}{hint}; expected: {', '.join(_REQUEST_KEYS)}")
    method = data.get("method", "GET")
    if not isinstance(method, str) or not method:
        problems.append(f"method must be a non-empty string, got {json.dumps(method)}")
    if "path" not in data:
        problems.append("missing required key 'path'")
    path = data.get("path", "")
    if not isinstance(path, str):
        problems.append(f"path must be a string, got {json.dumps(path)}")
    host = data.get("host", "")
    if not isinstance(host, str):
        problems.append(f"host must be a string, got {json.dumps(host)}")
    headers: list[tuple[str, str]] = []
    raw_headers = data.get("headers", [])
    if not isinstance(raw_headers, list):
        problems.append(
            f"headers must be a list of [name, value] pairs, got {json.dumps(raw_headers)}"
        )
    else:
        for i, pair in enumerate(raw_headers):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(part, str) for part in pair)
            ):
                problems.append(
                    f"headers[{i}] must be a [name, value] pair of strings, got {json.dumps(pair)}"
                )
                continue
            problem = _header_name_problem(pair[0])
            if problem:
                problems.append(f"headers[{i}]: {problem}")
                continue
            headers.append((pair[0], pair[1]))
    claims = data.get("claims", {})
    if not isinstance(claims, dict):
        problems.append(f"claims must be a JSON object, got {json.dumps(claims)}")
    body = data.get("body", "")
    if not isinstance(body, str):
        problems.append(f"body must be a string, got {json.dumps(body)}")
    if problems:
        return "; ".join(problems)
    return RouteRequest(method, path, host, tuple(headers), claims, body.encode("utf-8"))


def _read_requests(path: str) -> list[RouteRequest] | None:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        _error(f"{path}: cannot read requests: {exc.strerror}")
        return None
    except UnicodeDecodeError as exc:
        _error(f"{path}: requests file is not UTF-8: {exc.reason}")
        return None
    requests: list[RouteRequest] = []
    bad: list[str] = []
    # JSON lines end at "\n" only (a JSON string may hold U+2028 and friends).
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        parsed = _request_from_json(line)
        if isinstance(parsed, str):
            bad.append(f"{path}:{number}: {parsed}")
        else:
            requests.append(parsed)
    if bad:
        _error("\n".join(bad))
        return None
    return requests


def _single_request(args: argparse.Namespace) -> RouteRequest | None:
    body = b""
    if args.body is not None:
        body = args.body.encode("utf-8")
    elif args.body_file is not None:
        try:
            body = Path(args.body_file).read_bytes()
        except OSError as exc:
            _error(f"{args.body_file}: cannot read body: {exc.strerror}")
            return None
    return RouteRequest(
        args.method or "GET",
        args.path,
        args.host or "",
        tuple(args.headers or ()),
        args.claims if args.claims is not None else {},
        body,
    )


def _token_claims(
    config: GatewayConfig, token: str, now: float
) -> tuple[dict[str, Any] | None, str]:
    """Verify ``token`` as the gateway's claim routing does. Returns (claims, a note);
    claims ``{}`` when it does not verify (it then satisfies no claim matcher), ``None``
    when it cannot be checked here (remote keys)."""
    issuer = unverified_issuer(token)
    providers = [p for p in config.jwt_providers.values() if p.issuer == issuer]
    if not providers:
        known = ", ".join(repr(p.issuer) for p in config.jwt_providers.values()) or "none"
        return {}, f"token: no provider has issuer {issuer!r} (configured: {known}); claims {{}}"
    provider = providers[0]
    if provider.jwks.kind == "remote":
        return None, (
            f"token: provider {provider.name!r} fetches its keys from {provider.jwks.uri}; "
            "gwcore route does no network I/O: pass the claims with --claims instead"
        )
    result = JwtAuthenticator(provider).authenticate(token, now)
    if isinstance(result, JwtError):
        return {}, f"token: rejected by {provider.name!r}: {result.description}; claims {{}}"
    assert not isinstance(result, KeysNeeded)  # inline and file keys are always there
    return dict(result.claims), f"token: verified by provider {provider.name!r}"


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False)


def _route(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.requests is not None:
        single = [
            flag
            for flag, value in (
                ("--method", args.method),
                ("--path", args.path),
                ("--host", args.host),
                ("-H", args.headers),
                ("--claims", args.claims),
                ("--token", args.token),
                ("--body", args.body),
                ("--body-file", args.body_file),
            )
            if value is not None
        ]
        if single:
            parser.error(f"--requests takes each request from the file; drop {', '.join(single)}")
    elif args.path is None:
        parser.error("give --path (or --requests FILE.jsonl)")
    if args.now is not None and args.token is None:
        parser.error("--now applies to --token")

    config = _load(args.config)
    if config is None:
        return 1
    table = RouteTable(config)
    token_note = None
    if args.token is not None:
        # The command line is the outer edge: it reads the clock the core never does.
        now = args.now if args.now is not None else datetime.datetime.now(datetime.UTC).timestamp()
        claims, token_note = _token_claims(config, args.token, now)
        if claims is None:
            _error(token_note)
            return 1
        args.claims = claims

    if args.requests is not None:
        requests = _read_requests(args.requests)
        if requests is None:
            return 1
        for each in requests:
            print(_dumps(_answer(table.match(each), args.weight_draw)))
        return 0

    request = _single_request(args)
    if request is None:
        return 1
    decision = table.match(request)
    if args.json:
        answer = _answer(decision, args.weight_draw)
        if token_note is not None:
            answer["token"] = token_note
        print(_dumps(answer))
        return 0
    explanation = table.explain(request)
    if token_note is not None:
        print(token_note)
    print(explanation)
    if isinstance(decision, Matched):
        action = decision.route.action
        if isinstance(action, m.ForwardAction) and action.weighted_clusters:
            picked = action.pick_cluster(args.weight_draw)
            print(f"weighted pick with --weight-draw {args.weight_draw:g}: {picked}")
    for note in _notes(explanation, request, args):
        print(note)
    return 0


# --------------------------------------------------------------------- serve


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    if not config.listeners and args.listen is None:
        _error(f"{args.config}: no listeners configured; give --listen HOST:PORT")
        return 1
    backend = args.backend or os.environ.get("GWCORE_BACKEND") or "trio"
    if backend not in BACKENDS:
        _error(f"GWCORE_BACKEND={backend!r}: choose from {', '.join(BACKENDS)}")
        return 2
    # Only `serve` needs an adapter: import the chosen one alone.
    if backend == "asyncio":
        from gwcore_asyncio.run import run as run_asyncio

        run = run_asyncio
    else:
        from gwcore_trio.run import run as run_trio

        run = run_trio

    try:
        return run(args.config, args.listen, args.workers)
    except ConfigError as exc:  # the file changed since it was checked
        _error(str(exc))
        return 1


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gwcore`` command; returns the exit status."""
    parser, route_parser = _parser()
    try:
        args = parser.parse_args(argv)
        _tolerant_streams()
        if args.command == "check":
            return _check(args.config)
        if args.command == "serve":
            return _serve(args)
        return _route(args, route_parser)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    except BrokenPipeError:  # e.g. piped into head: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
