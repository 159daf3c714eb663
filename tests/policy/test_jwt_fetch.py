"""The remote JWKS fetch state machine: single flight, stale serving, expiry, retry,
kid-miss refetch with cooldown, rotation; and a stateful property test of the rule
that no request waits forever."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from test_jwt_support import (
    JWKS_URI,
    NOW,
    claims,
    craft,
    ec_key,
    jwks_body,
    oct_jwk,
    provider,
    public_jwk,
    sign,
)

import gwcore.policy.jwt as jwt_module
from gwcore.policy.jwt import (
    INTERNAL_ERROR_DESCRIPTION,
    REASONS,
    JwtAuthenticator,
    JwtError,
    KeysNeeded,
    VerifiedToken,
)

# cache_duration 300, max_stale 3600, retry_interval 10, refetch_cooldown 30 (defaults)
KEY_A = public_jwk(ec_key("P-256", 0), "a")
KEY_B = public_jwk(ec_key("P-256", 1), "b")
TOKEN_A = sign(claims(exp=NOW + 10**7), ec_key("P-256", 0), "ES256", kid="a")
TOKEN_B = sign(claims(exp=NOW + 10**7), ec_key("P-256", 1), "ES256", kid="b")
NEEDED = KeysNeeded("idp")


def remote(**jwks_options: Any) -> JwtAuthenticator:
    return JwtAuthenticator(provider(remote=True, jwks_options=jwks_options))


def ready(*keys: dict[str, Any], at: float = NOW, **jwks_options: Any) -> JwtAuthenticator:
    """A remote authenticator whose first fetch succeeded at ``at``."""
    auth = remote(**jwks_options)
    assert auth.take_fetch(at) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(*(keys or (KEY_A,))), at)
    return auth


def reason(result: object) -> str:
    assert isinstance(result, JwtError), result
    return result.reason


class CountingVerifier:
    """Counts signature checks (wraps the module's ``_verify_signature``)."""

    def __init__(self, inner: Callable[..., bool]) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, *args: Any) -> bool:
        self.calls += 1
        return self.inner(*args)


@pytest.fixture
def verifier(monkeypatch: pytest.MonkeyPatch) -> CountingVerifier:
    counting = CountingVerifier(jwt_module._verify_signature)
    monkeypatch.setattr(jwt_module, "_verify_signature", counting)
    return counting


# ----------------------------------------------------------------- first fetch


def test_first_request_waits_for_a_single_fetch() -> None:
    auth = remote()
    assert not auth.fetching and auth.keys is None
    assert auth.authenticate(TOKEN_A, NOW) == NEEDED
    assert auth.take_fetch(NOW) == JWKS_URI
    assert auth.fetching
    # single flight: more requests wait on the same fetch
    assert auth.authenticate(TOKEN_B, NOW + 1) == NEEDED
    assert auth.take_fetch(NOW + 1) is None
    assert auth.take_fetch(NOW + 1000) is None
    auth.fetch_succeeded(200, jwks_body(KEY_A, KEY_B), NOW + 2)
    assert not auth.fetching
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 2), VerifiedToken)
    assert isinstance(auth.authenticate(TOKEN_B, NOW + 2), VerifiedToken)
    assert auth.take_fetch(NOW + 2) is None


def test_keys_can_be_fetched_before_any_request() -> None:
    auth = remote()
    assert auth.take_fetch(NOW) == JWKS_URI


def test_malformed_tokens_do_not_wait_for_keys() -> None:
    auth = remote()
    hs256 = craft({"alg": "HS256", "kid": "a"}, claims(), bytes(32), "HS256")
    for token in ("garbage", TOKEN_A + "x", "e30.e30.", hs256, craft({"alg": "none"}, claims())):
        result = auth.authenticate(token, NOW)
        assert isinstance(result, JwtError), token
    assert auth.take_fetch(NOW) == JWKS_URI  # only because keys are missing


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, jwks_body(KEY_A), "HTTP status 404"),
        (500, b"", "HTTP status 500"),
        (200, b"<html>", "not valid JSON"),
        (200, b'{"keys": []}', "no keys"),
        (200, jwks_body(oct_jwk(bytes(32), "s")), "not accepted from this source"),
        (200, jwks_body(dict(KEY_A, use="enc")), "no usable signing key"),
    ],
)
def test_failed_first_fetch_answers_unavailable_until_retry(
    status: int, body: bytes, error: str
) -> None:
    auth = remote(unavailable_status=599)
    assert auth.take_fetch(NOW) == JWKS_URI
    auth.fetch_succeeded(status, body, NOW)
    assert not auth.fetching
    assert auth.last_fetch_error is not None and error in auth.last_fetch_error
    result = auth.authenticate(TOKEN_A, NOW)
    assert reason(result) == "keys_unavailable"
    assert isinstance(result, JwtError) and result.status == 599
    assert auth.take_fetch(NOW + 10) is None  # retry_interval not passed
    assert reason(auth.authenticate(TOKEN_A, NOW + 10)) == "keys_unavailable"
    # once it has passed: wait again, with a new fetch
    assert auth.authenticate(TOKEN_A, NOW + 10.5) == NEEDED
    assert auth.take_fetch(NOW + 10.5) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW + 11)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 11), VerifiedToken)
    assert auth.last_fetch_error is None


def test_fetch_failed_is_a_failure_too() -> None:
    auth = remote()
    auth.take_fetch(NOW)
    auth.fetch_failed("connect timeout", NOW + 5)
    assert auth.last_fetch_error == "connect timeout"
    assert reason(auth.authenticate(TOKEN_A, NOW + 5)) == "keys_unavailable"


def test_zero_intervals_still_never_loop_at_one_instant() -> None:
    auth = remote(retry_interval=0, refetch_cooldown=0, cache_duration=0, max_stale=0)
    assert auth.authenticate(TOKEN_A, NOW) == NEEDED
    assert auth.take_fetch(NOW) == JWKS_URI
    auth.fetch_failed("refused", NOW)
    assert reason(auth.authenticate(TOKEN_A, NOW)) == "keys_unavailable"
    assert auth.authenticate(TOKEN_A, NOW + 0.001) == NEEDED
    assert auth.take_fetch(NOW + 0.001) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW + 0.002)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 0.002), VerifiedToken)
    assert reason(auth.authenticate(TOKEN_B, NOW + 0.002)) == "unknown_kid"


# ------------------------------------------------------- stale keys and expiry


def test_stale_keys_keep_serving_while_refreshed_in_the_background() -> None:
    auth = ready(KEY_A)
    assert auth.take_fetch(NOW + 299) is None  # fresh
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 301), VerifiedToken)
    assert auth.take_fetch(NOW + 301) == JWKS_URI  # stale: refresh, nobody waits
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 302), VerifiedToken)
    auth.fetch_failed("503 from the IdP", NOW + 303)
    # a failed refresh keeps the last good keys, and is retried after retry_interval
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 304), VerifiedToken)
    assert auth.take_fetch(NOW + 313) is None
    assert auth.take_fetch(NOW + 313.5) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW + 314)
    assert auth.take_fetch(NOW + 314 + 299) is None


def test_keys_are_dropped_after_max_stale(verifier: CountingVerifier) -> None:
    auth = ready(KEY_A, cache_duration=300, max_stale=600, retry_interval=10)
    assert isinstance(auth.authenticate(TOKEN_A, NOW), VerifiedToken)
    for at in (NOW + 400, NOW + 600, NOW + 800):
        assert auth.take_fetch(at) == JWKS_URI
        auth.fetch_failed("down", at)
        assert isinstance(auth.authenticate(TOKEN_A, at), VerifiedToken)
    assert verifier.calls == 1  # served from the cache all along
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 900), VerifiedToken)
    # past cache_duration + max_stale: the keys (and the cache) are gone; the last
    # failure (at +800) is older than retry_interval, so the request waits for a fetch
    assert auth.authenticate(TOKEN_A, NOW + 900.5) == NEEDED
    assert auth.keys is None
    assert auth.cached == 0
    assert auth.take_fetch(NOW + 901) == JWKS_URI
    auth.fetch_failed("down", NOW + 902)
    assert reason(auth.authenticate(TOKEN_A, NOW + 902)) == "keys_unavailable"
    assert verifier.calls == 1


def test_keys_gone_right_after_a_recent_failure_answer_unavailable() -> None:
    auth = ready(KEY_A, cache_duration=10, max_stale=20, retry_interval=100)
    assert auth.take_fetch(NOW + 25) == JWKS_URI
    auth.fetch_failed("down", NOW + 25)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 30), VerifiedToken)
    result = auth.authenticate(TOKEN_A, NOW + 31)
    assert reason(result) == "keys_unavailable"
    assert isinstance(result, JwtError) and result.status == 503


# ------------------------------------------------------------- unknown kid


def test_unknown_kid_refetches_once_then_answers_unknown_kid() -> None:
    auth = ready(KEY_A)
    # right after a fetch, within refetch_cooldown: no refetch
    assert reason(auth.authenticate(TOKEN_B, NOW + 30)) == "unknown_kid"
    assert auth.take_fetch(NOW + 30) is None
    # later: the request waits for a refetch
    assert auth.authenticate(TOKEN_B, NOW + 31) == NEEDED
    assert auth.take_fetch(NOW + 31) == JWKS_URI
    assert auth.authenticate(TOKEN_B, NOW + 31.5) == NEEDED  # in flight: wait for it
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW + 32)  # still no key b
    assert reason(auth.authenticate(TOKEN_B, NOW + 32)) == "unknown_kid"
    assert auth.take_fetch(NOW + 32) is None
    # the cooldown counts from the refetch: not before +62 (after its success at +32)
    assert reason(auth.authenticate(TOKEN_B, NOW + 62)) == "unknown_kid"
    assert auth.authenticate(TOKEN_B, NOW + 62.5) == NEEDED
    assert auth.take_fetch(NOW + 62.5) == JWKS_URI


def test_unknown_kid_finds_a_newly_published_key() -> None:
    auth = ready(KEY_A)
    assert auth.authenticate(TOKEN_B, NOW + 40) == NEEDED
    assert auth.take_fetch(NOW + 40) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A, KEY_B), NOW + 41)
    assert isinstance(auth.authenticate(TOKEN_B, NOW + 41), VerifiedToken)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 41), VerifiedToken)


def test_unknown_kid_after_a_failure_waits_for_retry_interval() -> None:
    auth = ready(KEY_A, refetch_cooldown=5, retry_interval=20)
    assert auth.take_fetch(NOW + 300) == JWKS_URI
    auth.fetch_failed("down", NOW + 300)
    assert reason(auth.authenticate(TOKEN_B, NOW + 310)) == "unknown_kid"
    assert auth.authenticate(TOKEN_B, NOW + 320.5) == NEEDED
    assert auth.take_fetch(NOW + 320.5) == JWKS_URI
    auth.fetch_failed("down", NOW + 321)
    assert reason(auth.authenticate(TOKEN_B, NOW + 321)) == "unknown_kid"
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 321), VerifiedToken)


def test_kid_miss_storm_makes_one_fetch() -> None:
    auth = ready(KEY_A)
    tokens = [sign(claims(), ec_key("P-256", 0), "ES256", kid=f"k{i}") for i in range(50)]
    fetches = 0
    for i, token in enumerate(tokens):
        at = NOW + 100 + i * 0.1
        result = auth.authenticate(token, at)
        if auth.take_fetch(at) is not None:
            fetches += 1
            auth.fetch_succeeded(200, jwks_body(KEY_A), at)
        assert result == NEEDED or reason(result) == "unknown_kid"
    assert fetches == 1


def test_inline_keys_never_wait() -> None:
    auth = JwtAuthenticator(provider([KEY_A]))
    assert reason(auth.authenticate(TOKEN_B, NOW)) == "unknown_kid"
    assert auth.take_fetch(NOW) is None


# ---------------------------------------------------------------- rotation


def test_rotation_stops_cached_tokens_of_a_removed_key(verifier: CountingVerifier) -> None:
    auth = ready(KEY_A)
    assert isinstance(auth.authenticate(TOKEN_A, NOW), VerifiedToken)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 1), VerifiedToken)
    assert verifier.calls == 1 and auth.cached == 1
    # the refresh publishes the same keys: the cache survives
    assert auth.take_fetch(NOW + 301) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW + 301)
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 302), VerifiedToken)
    assert verifier.calls == 1
    # key b added: the set changed, the cache is cleared, a still verifies
    assert auth.take_fetch(NOW + 602) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_A, KEY_B), NOW + 602)
    assert auth.cached == 0
    assert isinstance(auth.authenticate(TOKEN_A, NOW + 603), VerifiedToken)
    assert isinstance(auth.authenticate(TOKEN_B, NOW + 603), VerifiedToken)
    assert verifier.calls == 3
    # key a removed: its token, cached a second ago, no longer passes
    assert auth.take_fetch(NOW + 903) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(KEY_B), NOW + 903)
    assert reason(auth.authenticate(TOKEN_A, NOW + 904)) == "unknown_kid"
    assert isinstance(auth.authenticate(TOKEN_B, NOW + 904), VerifiedToken)


def test_same_kid_with_a_new_key_stops_old_tokens() -> None:
    auth = ready(KEY_A)
    assert isinstance(auth.authenticate(TOKEN_A, NOW), VerifiedToken)
    replaced = public_jwk(ec_key("P-256", 2), "a")
    assert auth.take_fetch(NOW + 301) == JWKS_URI
    auth.fetch_succeeded(200, jwks_body(replaced), NOW + 301)
    assert reason(auth.authenticate(TOKEN_A, NOW + 302)) == "bad_signature"


def test_an_unsolicited_answer_is_still_applied() -> None:
    """fetch_succeeded without take_fetch (e.g. an answer arriving after the engine
    timed the fetch out and reported a failure) installs good keys."""
    auth = remote()
    auth.fetch_succeeded(200, jwks_body(KEY_A), NOW)
    assert not auth.fetching
    assert isinstance(auth.authenticate(TOKEN_A, NOW), VerifiedToken)


# --------------------------------------------------- the no-hang property


@dataclass
class Model:
    in_flight: bool = False
    installed: frozenset[str] | None = None
    installed_at: float = 0.0
    parked: list[int] = field(default_factory=list)


KEYS = {"a": KEY_A, "b": KEY_B, "c": public_jwk(ec_key("P-256", 3), "c")}
PRIVATE = {"a": ec_key("P-256", 0), "b": ec_key("P-256", 1), "c": ec_key("P-256", 3)}
TOKENS: list[tuple[str | None, str]] = [
    ("a", TOKEN_A),
    ("b", TOKEN_B),
    ("c", sign(claims(exp=NOW + 10**7), PRIVATE["c"], "ES256", kid="c")),
    ("a", sign(claims(exp=NOW + 10**7, n=1), PRIVATE["a"], "ES256")),  # no kid: tries all
    (None, sign(claims(exp=NOW + 10**7), PRIVATE["a"], "ES256", kid="zzz")),
    (None, sign(claims(exp=NOW + 10**7), ec_key("P-256", 9), "ES256", kid="a")),
    (None, "not.a.token"),
]
DOCUMENTS: list[tuple[frozenset[str] | None, bytes]] = [
    (frozenset("a"), jwks_body(KEYS["a"])),
    (frozenset("b"), jwks_body(KEYS["b"])),
    (frozenset("ab"), jwks_body(KEYS["a"], KEYS["b"])),
    (frozenset("c"), jwks_body(KEYS["c"])),
    (frozenset("abc"), jwks_body(*KEYS.values())),
    (None, b"<html>busy</html>"),
    (None, jwks_body(dict(KEY_A, use="enc"))),
]


class FetchMachine(RuleBasedStateMachine):
    """Engine-like driver: authenticate, start fetches when told, finish them, and
    re-authenticate parked requests the instant a fetch ends."""

    auth: JwtAuthenticator
    now: float
    model: Model
    options: dict[str, float]

    @initialize(
        cache_duration=st.sampled_from([0.0, 30.0, 300.0]),
        max_stale=st.sampled_from([0.0, 60.0, 3600.0]),
        retry_interval=st.sampled_from([0.0, 10.0]),
        refetch_cooldown=st.sampled_from([0.0, 30.0]),
        cache_size=st.sampled_from([0, 2, 100]),
    )
    def setup(
        self,
        cache_duration: float,
        max_stale: float,
        retry_interval: float,
        refetch_cooldown: float,
        cache_size: int,
    ) -> None:
        self.options = {
            "cache_duration": cache_duration,
            "max_stale": max_stale,
            "retry_interval": retry_interval,
            "refetch_cooldown": refetch_cooldown,
            "unavailable_status": 503,
        }
        self.auth = JwtAuthenticator(
            provider(remote=True, jwks_options=self.options, cache_size=cache_size)
        )
        self.now = NOW
        self.model = Model()

    def current_kids(self) -> frozenset[str] | None:
        model = self.model
        limit = self.options["cache_duration"] + self.options["max_stale"]
        if model.installed is not None and self.now > model.installed_at + limit:
            return None
        return model.installed

    @rule(seconds=st.sampled_from([0.0, 0.001, 1.0, 5.0, 10.0, 10.5, 31.0, 120.0, 400.0, 4000.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    def check(self, index: int, result: object) -> None:
        expected_kid, _ = TOKENS[index]
        event(f"result {getattr(result, 'reason', type(result).__name__)}")
        if isinstance(result, VerifiedToken):
            kids = self.current_kids()
            assert kids is not None and expected_kid in kids
        elif isinstance(result, JwtError):
            assert result.reason in REASONS
            assert result.description != INTERNAL_ERROR_DESCRIPTION
            assert result.status == (503 if result.reason == "keys_unavailable" else 401)
        else:
            assert isinstance(result, KeysNeeded)

    @rule(index=st.integers(0, len(TOKENS) - 1))
    def authenticate(self, index: int) -> None:
        result = self.auth.authenticate(TOKENS[index][1], self.now)
        self.check(index, result)
        if isinstance(result, KeysNeeded):
            # the invariant: a fetch is in flight, or one starts now
            if not self.auth.fetching:
                assert self.auth.take_fetch(self.now) == JWKS_URI
                self.model.in_flight = True
            self.model.parked.append(index)

    @rule()
    def take_fetch(self) -> None:
        url = self.auth.take_fetch(self.now)
        if self.model.in_flight:
            assert url is None  # never two in flight
        elif url is not None:
            assert url == JWKS_URI
            self.model.in_flight = True

    def resume_parked(self) -> None:
        for index in self.model.parked:
            result = self.auth.authenticate(TOKENS[index][1], self.now)
            self.check(index, result)
            assert not isinstance(result, KeysNeeded), "a parked request would wait again"
        self.model.parked.clear()

    @precondition(lambda self: self.model.in_flight)
    @rule(document=st.integers(0, len(DOCUMENTS) - 1), ok=st.booleans())
    def fetch_answered(self, document: int, ok: bool) -> None:
        kids, body = DOCUMENTS[document]
        self.auth.fetch_succeeded(200 if ok else 502, body, self.now)
        self.model.in_flight = False
        if ok and kids is not None:
            self.model.installed = kids
            self.model.installed_at = self.now
        self.resume_parked()

    @precondition(lambda self: self.model.in_flight)
    @rule()
    def fetch_failed(self) -> None:
        self.auth.fetch_failed("timeout", self.now)
        self.model.in_flight = False
        self.resume_parked()

    @invariant()
    def in_flight_matches(self) -> None:
        if hasattr(self, "auth"):
            assert self.auth.fetching == self.model.in_flight
            kids = self.current_kids()
            if kids is None:
                # dropped lazily: the authenticator may still hold the expired set
                assert self.auth.keys is None or self.auth.keys.kids == self.model.installed
            else:
                assert self.auth.keys is not None and self.auth.keys.kids == kids


FetchMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestFetchMachine = FetchMachine.TestCase
