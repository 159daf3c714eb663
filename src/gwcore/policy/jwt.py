"""JWT verification for one provider: find the token, check it, fetch its keys.

Pure: time is an argument (``now``, Unix wall-clock seconds) and the adapter does the
HTTP fetch of a remote JWKS. The pieces:

- :func:`find_token` looks for a token in a request (header with a ``Bearer``-style
  scheme, query parameter, cookie), in the provider's source order.
- :func:`verify_jws` checks a compact JWS against a :class:`JwksKeySet`: strict
  base64url, a JSON-object header, ``alg`` in the allowlist (never ``none``), no
  ``crit`` extensions, the key chosen by ``kid`` (or every key of the algorithm when
  there is no ``kid``) and the signature, checked by PyJWT with a key bound to the
  algorithm.
- :class:`JwtAuthenticator` adds the claims (``iss``, ``aud``, required claims,
  ``exp``/``nbf``/``iat`` against ``now`` with the provider's clock skew), a bounded
  cache of verified tokens, and the fetch state machine of a remote JWKS.

Every rejection is a :class:`JwtError` whose ``reason`` is a short code and whose
``description`` is a fixed text, safe to put into ``WWW-Authenticate`` (it never
repeats anything from the token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote_plus

from gwcore.config import model as m
from gwcore.policy.jwks import SUPPORTED_ALGORITHMS, JwksError, JwksKeySet, KeyVerifier

__all__ = [
    "DESCRIPTIONS",
    "REASONS",
    "FoundToken",
    "JwksError",
    "JwksKeySet",
    "JwtAuthenticator",
    "JwtError",
    "KeysNeeded",
    "VerifiedToken",
    "find_token",
    "unverified_issuer",
    "verify_jws",
]

# The default description of each reason (a JwtError may carry a more precise one).
DESCRIPTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "missing": "a bearer token is required",
        "malformed": "the token is malformed",
        "too_large": "the token is too large",
        "bad_algorithm": "the token algorithm is not allowed",
        "unknown_kid": "no key matches the token key id",
        "bad_signature": "the token signature is invalid",
        "expired": "the token has expired",
        "not_yet_valid": "the token is not valid yet",
        "issued_in_future": "the token was issued in the future",
        "bad_issuer": "the token issuer is not accepted",
        "bad_audience": "the token audience is not accepted",
        "missing_claim": "the token lacks a required claim",
        "keys_unavailable": "the signing keys are unavailable",
    }
)
REASONS: Final[frozenset[str]] = frozenset(DESCRIPTIONS)
# What authenticate() answers if verification itself fails unexpectedly (a bug):
# never raise into the engine. Tests check that no input reaches it.
INTERNAL_ERROR_DESCRIPTION: Final = "the token could not be processed"
# unverified_issuer() ignores tokens longer than this.
MAX_UNVERIFIED_BYTES: Final = 65536

_UNSAFE_DESCRIPTION_CHARS = re.compile(r'[^\x20-\x7e]|["\\]')
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
# RFC 6750 b64token: what may follow "Bearer ". Also required of query and cookie tokens.
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
_OWS = " \t"


def _safe_text(text: str) -> str:
    """Printable ASCII without double quotes or backslashes (a quoted-string body)."""
    return _UNSAFE_DESCRIPTION_CHARS.sub("", text)


def bearer_challenge(realm: str, error: str | None = None, description: str = "") -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 §3): ``Bearer realm="..."``, with
    ``error`` (``invalid_token``, ``insufficient_scope``) and its description when
    given. Every value is made safe for a quoted string."""
    challenge = f'Bearer realm="{_safe_text(realm)}"'
    if error is None:
        return challenge
    return f'{challenge}, error="{error}", error_description="{_safe_text(description)}"'


class JwtError(Exception):
    """A token was refused (or could not be checked yet: ``keys_unavailable``).

    ``reason``: one of :data:`REASONS`. ``description``: human text safe for
    ``WWW-Authenticate`` (printable ASCII, no ``"`` or ``\\``, never token content).
    ``status``: 401, or the provider's ``jwks.unavailable_status`` for
    ``keys_unavailable``.
    """

    reason: str
    description: str
    status: int

    def __init__(self, reason: str, description: str | None = None, status: int = 401) -> None:
        self.reason = reason
        self.description = _safe_text(
            description if description is not None else DESCRIPTIONS.get(reason, "invalid token")
        )
        self.status = status
        super().__init__(reason, self.description, status)

    def __str__(self) -> str:
        return f"{self.reason}: {self.description}"

    def __repr__(self) -> str:
        return f"JwtError({self.reason!r}, {self.description!r}, status={self.status})"

    def www_authenticate(self, realm: str) -> str:
        """A ``WWW-Authenticate`` value (RFC 6750): no error code when the token is
        ``missing``, else ``error="invalid_token"`` with the description."""
        if self.reason == "missing":
            return bearer_challenge(realm)
        return bearer_challenge(realm, "invalid_token", self.description)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A token that passed every check. ``claims`` is a read-only view of the payload;
    ``expires_at`` its ``exp`` (Unix seconds) or None."""

    provider: str
    claims: Mapping[str, Any]
    expires_at: float | None
    token: str


@dataclass(frozen=True, slots=True)
class KeysNeeded:
    """The token cannot be checked before the provider's JWKS fetch completes: park
    the request, start the fetch if ``take_fetch`` gives a URL, and authenticate again
    once the fetch succeeded or failed."""

    provider: str


@dataclass(frozen=True, slots=True)
class FoundToken:
    """A token found in a request: its text, and the source (header, query parameter
    or cookie) it came from, so ``forward: false`` can remove exactly that."""

    token: str
    source: m.TokenSource


# ------------------------------------------------------------------ finding the token


def _malformed(description: str) -> JwtError:
    return JwtError("malformed", description)


def _checked_token(token: str, where: str) -> str:
    if not token:
        raise _malformed(f"the {where} carries an empty token")
    if _B64TOKEN.fullmatch(token) is None:
        raise _malformed(f"the {where} does not carry a well-formed token")
    return token


def _split_scheme(value: str) -> tuple[str, str]:
    """``"Bearer  abc"`` -> ``("Bearer", "abc")``; the scheme ends at the first SP/HTAB."""
    for index, char in enumerate(value):
        if char in _OWS:
            return value[:index], value[index:].lstrip(_OWS)
    return value, ""


def _from_header(headers: Sequence[tuple[str, str]], source: m.TokenSource) -> str | None:
    name = source.name.lower()
    values = [value.strip(_OWS) for key, value in headers if key.lower() == name]
    if not values:
        return None
    where = f"{name} header"
    if not source.prefix:
        if len(values) > 1:
            raise _malformed(f"the {where} is repeated")
        return _checked_token(values[0], where)
    scheme = source.prefix.lower()
    found = [
        credentials
        for found_scheme, credentials in map(_split_scheme, values)
        if found_scheme.lower() == scheme
    ]
    if not found:
        return None  # another scheme (e.g. Basic): not this source
    if len(found) > 1:
        raise _malformed(f"the {where} carries more than one {_safe_text(source.prefix)} token")
    return _checked_token(found[0], where)


def _from_query(target: str, name: str) -> str | None:
    """The query is application/x-www-form-urlencoded (RFC 6750 2.3): "+" is a space."""
    _, has_query, query = target.partition("?")
    if not has_query:
        return None
    found: list[str] = []
    for part in query.partition("#")[0].split("&"):
        key, _, value = part.partition("=")
        if unquote_plus(key, errors="replace") != name:
            continue
        try:
            found.append(unquote_plus(value, errors="strict"))
        except UnicodeDecodeError:
            raise _malformed("the token query parameter is not valid UTF-8") from None
    if not found:
        return None
    if len(found) > 1:
        raise _malformed("the token query parameter is repeated")
    return _checked_token(found[0], "token query parameter")


def _from_cookie(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    found: set[str] = set()
    for key, header in headers:
        if key.lower() != "cookie":
            continue
        for pair in header.split(";"):
            cookie_name, has_value, value = pair.strip(_OWS).partition("=")
            if not has_value or cookie_name.strip(_OWS) != name:
                continue
            value = value.strip(_OWS)
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found.add(value)
    if not found:
        return None
    # Browsers send a cookie once per matching path/domain: the same value twice is
    # fine, two different tokens are ambiguous.
    if len(found) > 1:
        raise _malformed("the token cookie is repeated with different values")
    return _checked_token(found.pop(), "token cookie")


def remove_token(
    headers: Sequence[tuple[str, str]], target: str, source: m.TokenSource
) -> tuple[list[tuple[str, str]], str]:
    """``(headers, target)`` without the token ``source`` names, for a provider with
    ``forward: false``: the header, every occurrence of the query parameter (other
    parameters keep their bytes), or the cookie (other cookies stay)."""
    if source.kind == "header":
        return [(n, v) for n, v in headers if n.lower() != source.name], target
    if source.kind == "query":
        path, has_query, query = target.partition("?")
        if not has_query:
            return list(headers), target
        query, has_fragment, fragment = query.partition("#")
        kept = [
            part
            for part in query.split("&")
            if unquote_plus(part.partition("=")[0], errors="replace") != source.name
        ]
        rest = "&".join(kept)
        target = path + ("?" + rest if rest else "") + ("#" + fragment if has_fragment else "")
        return list(headers), target
    out: list[tuple[str, str]] = []
    for name, value in headers:
        if name.lower() != "cookie":
            out.append((name, value))
            continue
        pairs = [
            pair.strip(_OWS)
            for pair in value.split(";")
            if pair.strip(_OWS).partition("=")[0].strip(_OWS) != source.name
        ]
        if any(pairs):
            out.append((name, "; ".join(p for p in pairs if p)))
    return out, target


def find_token(
    headers: Sequence[tuple[str, str]], target: str, sources: Sequence[m.TokenSource]
) -> FoundToken | None:
    """The token of the first source (in order) present in the request, or None.

    ``headers``: (lower-case name, value) pairs. ``target``: the request target
    (``/path?query``). A header source with a ``prefix`` (``Bearer``) takes only
    values whose scheme matches it case-insensitively, followed by spaces or tabs and
    the token; a value with another scheme is not this source. Raises
    ``JwtError("malformed")`` when a source is present but unusable: an empty or
    ill-formed token, the token header given twice, two different token cookies.
    """
    for source in sources:
        if source.kind == "header":
            token = _from_header(headers, source)
        elif source.kind == "query":
            token = _from_query(target, source.name)
        else:
            token = _from_cookie(headers, source.name)
        if token is not None:
            return FoundToken(token, source)
    return None


# ----------------------------------------------------------------------- JWS layer


_B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {char: index for index, char in enumerate(_B64URL_ALPHABET)}
# Unused low bits of the last character, by length % 4 (1 is never a valid length).
_UNUSED_BITS_MASK = {0: 0, 2: 0b1111, 3: 0b11}


def _is_canonical_b64url(segment: str) -> bool:
    """Strict base64url without padding (RFC 7515 section 2): the alphabet, a possible
    length and zero unused bits in the last character, without decoding."""
    if _B64URL.fullmatch(segment) is None:
        return False
    mask = _UNUSED_BITS_MASK.get(len(segment) % 4)
    if mask is None:
        return False
    return not segment or not _B64URL_VALUE[segment[-1]] & mask


def _decode_canonical(segment: str) -> bytes:
    """The bytes of a segment already checked by :func:`_is_canonical_b64url` (which
    makes it the one encoding of those bytes)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _b64url_decode(segment: str) -> bytes | None:
    """The bytes of a canonical base64url ``segment``, else None."""
    if not _is_canonical_b64url(segment):
        return None
    try:
        return _decode_canonical(segment)
    except (binascii.Error, ValueError):
        return None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate member")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Stricter than json.loads: a member name given twice (RFC 7515 5.2 / RFC 7519 7.2
# allow refusing it) and NaN/Infinity are errors.
_STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant)


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = _STRICT_JSON.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class _Jws:
    header: dict[str, Any]
    alg: str
    kid: str | None
    signing_input: bytes
    payload: str  # base64url, checked canonical
    signature: str  # base64url, checked canonical


def _parse_jws(token: str, algorithms: Collection[str]) -> _Jws:
    """Structure and header checks, before any key is needed."""
    if not token.isascii():
        raise _malformed("the token is not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise _malformed("the token must have three dot-separated parts")
    if not all(_is_canonical_b64url(part) for part in parts):
        raise _malformed("the token is not base64url")
    header = _json_object(_decode_canonical(parts[0]))
    if header is None:
        raise _malformed("the token header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise _malformed("the token header has no alg")
    if alg not in algorithms or alg.lower() == "none":
        raise JwtError("bad_algorithm")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _malformed("the token kid is not a string")
    if "crit" in header:
        raise _malformed("the token uses critical header extensions")
    if header.get("b64", True) is not True:
        raise _malformed("unencoded token payloads are not supported")
    signing_input = token[: len(parts[0]) + 1 + len(parts[1])].encode("ascii")
    return _Jws(header, alg, kid, signing_input, parts[1], parts[2])


def _verify_signature(verifier: KeyVerifier, signing_input: bytes, signature: bytes) -> bool:
    """One signature check (the one expensive step; the tests count calls here)."""
    return verifier.verify(signing_input, signature)


def _check_signature(jws: _Jws, keys: JwksKeySet) -> bytes:
    """The payload bytes when a key of ``keys`` verifies the signature."""
    if jws.kid is not None:
        key = keys.by_kid(jws.kid)
        if key is None:
            raise JwtError("unknown_kid")
        verifier = key.verifiers.get(jws.alg)
        if verifier is None:
            raise JwtError("bad_algorithm", "the key does not support the token algorithm")
        candidates: tuple[KeyVerifier, ...] = (verifier,)
    else:
        candidates = keys.for_algorithm(jws.alg)
        if not candidates:
            raise JwtError("unknown_kid", "no key for the token algorithm")
    signature = _decode_canonical(jws.signature)
    payload = _decode_canonical(jws.payload)
    for verifier in candidates:
        if _verify_signature(verifier, jws.signing_input, signature):
            return payload
    raise JwtError("bad_signature")


def verify_jws(
    token: str, keys: JwksKeySet, algorithms: Collection[str]
) -> tuple[Mapping[str, Any], bytes]:
    """Check a compact JWS's structure, algorithm and signature; return its header and
    payload bytes (the payload is not interpreted). Raises :class:`JwtError`
    (``malformed``, ``bad_algorithm``, ``unknown_kid``, ``bad_signature``)."""
    jws = _parse_jws(token, frozenset(algorithms) & SUPPORTED_ALGORITHMS)
    payload = _check_signature(jws, keys)
    return MappingProxyType(jws.header), payload


def unverified_issuer(token: str) -> str | None:
    """The ``iss`` of the token's payload, without any verification (to choose a
    provider); None when the token is not a well-formed JWT with a string ``iss``."""
    if len(token) > MAX_UNVERIFIED_BYTES or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    raw = _b64url_decode(parts[1])
    payload = _json_object(raw) if raw is not None else None
    issuer = payload.get("iss") if payload is not None else None
    return issuer if isinstance(issuer, str) else None


# -------------------------------------------------------------------------- claims


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"the {name} claim is not a number")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise _malformed(f"the {name} claim is not a finite number")
    return seconds


def _check_claims(
    claims: Mapping[str, Any], provider: m.JwtProvider, now: float
) -> tuple[float | None, float]:
    """Raise the first failed check; return (exp, the earliest time the token is valid)."""
    skew = provider.clock_skew
    exp = _time_claim(claims, "exp")
    nbf = _time_claim(claims, "nbf")
    iat = _time_claim(claims, "iat")
    for name in provider.required_claims:
        if name not in claims:
            raise JwtError("missing_claim", f"the token lacks the required claim {name}")
    if provider.issuer:
        issuer = claims.get("iss")
        if issuer is None:
            raise JwtError("bad_issuer", "the token has no issuer")
        if issuer != provider.issuer:
            raise JwtError("bad_issuer")
    if provider.audiences:
        audience = claims.get("aud")
        if audience is None:
            raise JwtError("bad_audience", "the token has no audience")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise _malformed("the aud claim is not a string or an array of strings")
        if not any(a in provider.audiences for a in audiences):
            raise JwtError("bad_audience")
    if exp is not None and now >= exp + skew:
        raise JwtError("expired")
    if nbf is not None and now < nbf - skew:
        raise JwtError("not_yet_valid")
    if iat is not None and now < iat - skew:
        raise JwtError("issued_in_future")
    starts = max(nbf if nbf is not None else -math.inf, iat if iat is not None else -math.inf)
    return exp, starts - skew


# --------------------------------------------------------------------- the provider


@dataclass(slots=True)
class _CacheEntry:
    result: VerifiedToken
    valid_from: float  # max(nbf, iat) - clock_skew
    valid_until: float  # exp (no skew: a cached answer is never used past exp)


class _VerifiedCache:
    """LRU of verified tokens keyed by SHA-256 of the token, at most ``size`` entries."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = max(0, size)
        self._entries: OrderedDict[bytes, _CacheEntry] = OrderedDict()

    def get(self, digest: bytes, now: float) -> VerifiedToken | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if now >= entry.valid_until:
            del self._entries[digest]
            return None
        if now < entry.valid_from:  # the wall clock went back: check it all again
            return None
        self._entries.move_to_end(digest)
        return entry.result

    def put(self, digest: bytes, entry: _CacheEntry, now: float) -> None:
        if self._size == 0 or now >= entry.valid_until:
            return
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class JwtAuthenticator:
    """One provider: its keys, the fetch state machine for remote JWKS, and a bounded
    cache of verification results.

    Inline and file keys are ready at construction. Remote keys come from fetches the
    caller performs: :meth:`take_fetch` says when to start one (and marks it in
    flight; never two at once), :meth:`fetch_succeeded` / :meth:`fetch_failed` report
    its end. Keys are fresh for ``cache_duration`` after a successful fetch; stale
    keys keep verifying for ``max_stale`` more seconds while ``take_fetch`` asks for a
    refresh (no request waits for it); after that they are dropped. A failed fetch is
    retried only once more than ``retry_interval`` seconds have passed (until then,
    with no keys, requests get ``keys_unavailable``). An unknown ``kid`` (or no key
    for a token without ``kid``) waits for a fetch already in flight, or asks for a
    refetch when more than ``refetch_cooldown`` seconds have passed since both the
    last successful fetch and the last kid-triggered one, and no fetch failed within
    ``retry_interval``; otherwise it is ``unknown_kid`` at once. All these intervals
    are strict: at the instant a fetch ends, nothing asks for another.

    :meth:`authenticate` answers :class:`KeysNeeded` only when a fetch is in flight or
    ``take_fetch(now)`` will start one, and, re-asked at the instant a fetch ended, it
    never answers ``KeysNeeded`` again: no request waits forever. The caller runs the
    fetch timeout (and reports it with :meth:`fetch_failed`). Call
    ``take_fetch(now)`` after each ``authenticate`` too, so stale keys get refreshed
    in the background.
    """

    def __init__(self, provider: m.JwtProvider) -> None:
        self._provider = provider
        self._algorithms = frozenset(
            name for name in provider.algorithms if name in SUPPORTED_ALGORITHMS
        )
        source = provider.jwks
        self._remote = source.kind == "remote"
        self._uri = source.uri or ""
        self._cache = _VerifiedCache(provider.cache_size)
        self._keys: JwksKeySet | None = None
        self._fetched_at: float | None = None  # last successful fetch (remote only)
        self._failed_at: float | None = None  # last failure since that success
        self._kid_refetch_at: float | None = None  # start of the last kid-triggered fetch
        self._kid_refetch_wanted = False
        self._fetching = False
        self._last_error: str | None = None
        if not self._algorithms:
            raise JwksError(f"provider {provider.name!r}: no supported signature algorithm")
        if self._remote:
            if not self._uri:
                raise JwksError(f"provider {provider.name!r}: a remote JWKS needs a uri")
        else:
            if source.document is None:
                raise JwksError(f"provider {provider.name!r}: the {source.kind} JWKS is not loaded")
            self._keys = JwksKeySet.parse(source.document, provider.algorithms)

    # ------------------------------------------------------------------ properties

    @property
    def provider(self) -> m.JwtProvider:
        """The provider configuration this authenticator verifies tokens for."""
        return self._provider

    @property
    def fetching(self) -> bool:
        """True while a JWKS fetch handed out by :meth:`take_fetch` has not been
        reported back (``fetch_succeeded`` or ``fetch_failed``)."""
        return self._fetching

    @property
    def keys(self) -> JwksKeySet | None:
        """The key set in use (possibly stale), or None."""
        return self._keys

    @property
    def last_fetch_error(self) -> str | None:
        """Why the last fetch failed, while no fetch has succeeded since (for logs)."""
        return self._last_error

    @property
    def cached(self) -> int:
        """Number of cached verification results."""
        return len(self._cache)

    # ------------------------------------------------------------ fetch state machine

    def _expire(self, now: float) -> None:
        if (
            self._keys is not None
            and self._fetched_at is not None
            and now
            > self._fetched_at + self._provider.jwks.cache_duration + self._provider.jwks.max_stale
        ):
            self._keys = None
            self._cache.clear()

    def _backing_off(self, now: float) -> bool:
        return (
            self._failed_at is not None
            and now <= self._failed_at + self._provider.jwks.retry_interval
        )

    def _stale(self, now: float) -> bool:
        return (
            self._fetched_at is not None
            and now >= self._fetched_at + self._provider.jwks.cache_duration
        )

    def _kid_refetch_allowed(self, now: float) -> bool:
        cooldown = self._provider.jwks.refetch_cooldown
        if self._fetched_at is not None and now <= self._fetched_at + cooldown:
            return False
        if self._kid_refetch_at is not None and now <= self._kid_refetch_at + cooldown:
            return False
        return not self._backing_off(now)

    def take_fetch(self, now: float) -> str | None:
        """The URL to fetch now (the fetch is then in flight), or None."""
        if not self._remote or self._fetching:
            return None
        self._expire(now)
        wanted = self._kid_refetch_wanted or (
            not self._backing_off(now) and (self._keys is None or self._stale(now))
        )
        if not wanted:
            return None
        if self._kid_refetch_wanted:
            self._kid_refetch_wanted = False
            self._kid_refetch_at = now
        self._fetching = True
        return self._uri

    def fetch_succeeded(self, status: int, body: bytes, now: float) -> None:
        """The fetch answered: a 200 with a usable JWKS installs it; anything else is
        a failure."""
        if status != 200:
            self.fetch_failed(f"HTTP status {status}", now)
            return
        try:
            keys = JwksKeySet.parse(body, self._provider.algorithms, allow_symmetric=False)
        except JwksError as exc:
            self.fetch_failed(str(exc), now)
            return
        self._fetching = False
        if self._keys is None or keys.fingerprint != self._keys.fingerprint:
            self._cache.clear()
        self._keys = keys
        self._fetched_at = now
        self._failed_at = None
        self._last_error = None

    def fetch_failed(self, reason: str, now: float) -> None:
        """The fetch failed (connection, TLS, timeout, body too big, bad JWKS)."""
        self._fetching = False
        self._failed_at = now
        self._last_error = reason

    # ---------------------------------------------------------------- verification

    def authenticate(self, token: str, now: float) -> VerifiedToken | JwtError | KeysNeeded:
        """Verify ``token`` at wall-clock time ``now``. Never raises."""
        try:
            return self._authenticate(token, now)
        except Exception:  # a bug must not take the engine down: refuse the token
            return JwtError("malformed", INTERNAL_ERROR_DESCRIPTION)

    def _authenticate(self, token: str, now: float) -> VerifiedToken | JwtError | KeysNeeded:
        if len(token) > self._provider.max_token_bytes:
            return JwtError("too_large")
        if not token.isascii():
            return _malformed("the token is not ASCII")
        if self._remote:
            self._expire(now)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        hit = self._cache.get(digest, now)
        if hit is not None:
            return hit
        try:
            jws = _parse_jws(token, self._algorithms)
        except JwtError as error:
            return error
        keys = self._keys
        if keys is None:
            if self._fetching or not self._backing_off(now):
                return KeysNeeded(self._provider.name)
            return JwtError("keys_unavailable", status=self._provider.jwks.unavailable_status)
        try:
            payload = _check_signature(jws, keys)
        except JwtError as error:
            if error.reason == "unknown_kid" and self._remote:
                if self._fetching:
                    return KeysNeeded(self._provider.name)
                if self._kid_refetch_allowed(now):
                    self._kid_refetch_wanted = True
                    return KeysNeeded(self._provider.name)
            return error
        claims = _json_object(payload)
        if claims is None:
            return _malformed("the token payload is not a JSON object")
        try:
            expires_at, valid_from = _check_claims(claims, self._provider, now)
        except JwtError as error:
            return error
        result = VerifiedToken(self._provider.name, MappingProxyType(claims), expires_at, token)
        until = expires_at if expires_at is not None else math.inf
        self._cache.put(digest, _CacheEntry(result, valid_from, until), now)
        return result
