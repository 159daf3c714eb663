"""Token bucket and sliding-window limiters, rate-limit keys, and the RateLimit headers."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.config import model as m
from gwcore.policy.ratelimit import (
    MAX_PLAIN_PART,
    RateDecision,
    SlidingWindow,
    TokenBucket,
    limiter_for,
    rate_limit_headers,
    rate_limit_key,
)

# ------------------------------------------------------------------ token bucket


def test_token_bucket_allows_burst_then_denies_with_retry_after() -> None:
    bucket = TokenBucket("api", rate=2.0, burst=3, max_keys=10)
    decisions = [bucket.take("k", 100.0) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[0].retry_after is None
    denied = decisions[3]
    assert denied.limit == 3
    assert denied.retry_after == pytest.approx(0.5)  # one token at 2 tokens/s
    assert denied.reset == pytest.approx(1.5)  # three tokens to refill


def test_token_bucket_refills_at_rate_and_caps_at_burst() -> None:
    bucket = TokenBucket("api", rate=10.0, burst=5, max_keys=10)
    for _ in range(5):
        assert bucket.take("k", 0.0).allowed
    assert not bucket.take("k", 0.0).allowed
    assert bucket.take("k", 0.1).allowed  # 0.1 s at 10/s is one token (despite float noise)
    assert not bucket.take("k", 0.1).allowed
    later = bucket.take("k", 1000.0)
    assert later.allowed and later.remaining == 4  # capped at burst, minus this take


def test_token_bucket_keys_are_independent() -> None:
    bucket = TokenBucket("api", rate=1.0, burst=1, max_keys=10)
    assert bucket.take("a", 0.0).allowed
    assert not bucket.take("a", 0.0).allowed
    assert bucket.take("b", 0.0).allowed


def test_token_bucket_time_going_backwards_mints_nothing() -> None:
    bucket = TokenBucket("api", rate=1.0, burst=2, max_keys=10)
    assert bucket.take("k", 50.0).allowed
    assert bucket.take("k", 50.0).allowed
    # The clock jumps back 40 s, then creeps forward: no refill until past 50 s again.
    assert not bucket.take("k", 10.0).allowed
    assert not bucket.take("k", 49.0).allowed
    assert not bucket.take("k", 50.5).allowed
    assert bucket.take("k", 51.0).allowed


def test_token_bucket_cost_above_burst_is_denied_without_consuming() -> None:
    bucket = TokenBucket("api", rate=1.0, burst=3, max_keys=10)
    big = bucket.take("k", 0.0, cost=4)
    assert not big.allowed
    assert big.retry_after == big.reset == 0.0  # documented: the full quota is there already
    assert len(bucket) == 0  # a full bucket is not stored
    assert bucket.take("k", 0.0, cost=3).allowed
    again = bucket.take("k", 0.0, cost=4)
    assert not again.allowed and again.retry_after == pytest.approx(3.0) == again.reset


def test_token_bucket_cost_zero_reports_without_consuming() -> None:
    bucket = TokenBucket("api", rate=1.0, burst=2, max_keys=10)
    bucket.take("k", 0.0)
    probe = bucket.take("k", 0.0, cost=0)
    assert probe.allowed and probe.remaining == 1
    assert bucket.take("k", 0.0).allowed


def test_negative_cost_and_bad_parameters_raise() -> None:
    with pytest.raises(ValueError, match="cost"):
        TokenBucket("a", 1.0, 1, 1).take("k", 0.0, cost=-1)
    with pytest.raises(ValueError, match="cost"):
        SlidingWindow("a", 1, 1.0, 1).take("k", 0.0, cost=-1)
    for args in [(0.0, 1, 1), (math.inf, 1, 1), (1.0, 0, 1), (1.0, 1, 0)]:
        with pytest.raises(ValueError):
            TokenBucket("a", *args)
    for sargs in [(0, 1.0, 1), (1, 0.0, 1), (1, math.nan, 1), (1, 1.0, 0)]:
        with pytest.raises(ValueError):
            SlidingWindow("a", *sargs)


def test_token_bucket_flood_of_keys_evicts_least_recently_used() -> None:
    bucket = TokenBucket("api", rate=1.0, burst=2, max_keys=3)
    for key in ("a", "b", "c"):
        bucket.take(key, 0.0)
    bucket.take("a", 0.0)  # "a" is now the most recent; "b" the least
    bucket.take("d", 0.0)  # evicts "b"
    assert len(bucket) == 3 and bucket.evictions == 1
    # "a" kept its state (one token left after two takes: denied on the third).
    assert not bucket.take("a", 0.0).allowed
    # "b" was evicted: it comes back as a fresh bucket, never more than that.
    fresh = [bucket.take("b", 0.0).allowed for _ in range(3)]
    assert fresh == [True, True, False]


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    burst=st.integers(1, 6),
    steps=st.lists(
        st.tuples(st.floats(-2.0, 2.0, allow_nan=False), st.integers(0, 3)), max_size=60
    ),
)
def test_token_bucket_never_admits_more_than_burst_plus_refill(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    """Whatever the clock does (even backwards), admitted units over the run are at most
    burst + rate * (the span of times seen): going back and forth refills nothing twice."""
    bucket = TokenBucket("t", rate, burst, max_keys=4)
    now = 1000.0
    low = high = now
    admitted = 0
    for delta, cost in steps:
        now += delta
        low, high = min(low, now), max(high, now)
        decision = bucket.take("k", now, cost)
        assert decision.remaining >= 0 and decision.limit == burst
        assert (decision.retry_after is None) == decision.allowed
        if decision.allowed:
            admitted += cost
        else:
            assert decision.retry_after is not None and decision.retry_after >= 0
    assert admitted <= burst + rate * (high - low) + 1e-6


@settings(max_examples=150, deadline=None)
@given(
    rate=st.sampled_from([0.5, 2.0, 7.0]),
    burst=st.integers(1, 5),
    prior=st.lists(st.floats(0.0, 0.3), max_size=12),
    cost=st.integers(1, 5),
)
def test_token_bucket_retry_after_is_exact(
    rate: float, burst: int, prior: list[float], cost: int
) -> None:
    """A denied request of cost <= burst is admitted after waiting retry_after, and not
    noticeably before."""
    cost = min(cost, burst)
    bucket = TokenBucket("t", rate, burst, max_keys=4)
    now = 0.0
    for gap in prior:
        now += gap
        bucket.take("k", now)
    decision = bucket.take("k", now, cost)
    if decision.allowed:
        return
    assert decision.retry_after is not None
    # Denied takes consume nothing, so probing early does not change the answer later.
    if decision.retry_after > 1e-3:
        assert not bucket.take("k", now + decision.retry_after - 1e-3, cost).allowed
    assert bucket.take("k", now + decision.retry_after, cost).allowed


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=80),
    max_keys=st.integers(1, 4),
)
def test_eviction_never_gives_more_than_a_fresh_bucket(keys: list[str], max_keys: int) -> None:
    """All at one instant (no refill): a key is admitted at most burst times per life,
    and it gets a new life only by being evicted."""
    burst = 2
    bucket = TokenBucket("t", 1.0, burst, max_keys)
    admitted = dict.fromkeys("abcdefgh", 0)
    lives = dict.fromkeys("abcdefgh", 1)
    for key in keys:
        before = set(bucket._keys)
        if bucket.take(key, 0.0).allowed:
            admitted[key] += 1
        for gone in before - set(bucket._keys):
            lives[gone] += 1
        assert len(bucket) <= max_keys
    for key in admitted:
        assert admitted[key] <= burst * lives[key]


# ------------------------------------------------------------------ sliding window


def test_sliding_window_counts_within_a_window_and_weights_the_previous() -> None:
    window = SlidingWindow("w", limit=4, window=10.0, max_keys=10)
    assert [window.take("k", 0.0).allowed for _ in range(5)] == [True] * 4 + [False]
    # Half-way through the next window the previous 4 weigh 2: two more fit.
    assert window.take("k", 15.0).allowed
    assert window.take("k", 15.0).allowed
    denied = window.take("k", 15.0)
    assert not denied.allowed and denied.remaining == 0
    # Two windows later everything has slid out.
    assert window.take("k", 30.0).remaining == 3


def test_sliding_window_retry_after_and_reset() -> None:
    window = SlidingWindow("w", limit=2, window=10.0, max_keys=10)
    window.take("k", 2.0)
    window.take("k", 3.0)
    denied = window.take("k", 4.0)
    assert not denied.allowed
    # Both are in the current window [0, 10): in the next window they weigh 2 * (1 - f),
    # and one more fits when that is <= 1: f = 0.5, i.e. at 15 s.
    assert denied.retry_after == pytest.approx(11.0)
    assert denied.reset == pytest.approx(16.0)  # both gone when window [10, 20) ends
    assert not window.take("k", 14.9).allowed
    assert window.take("k", 15.0).allowed


def test_sliding_window_time_going_backwards_mints_nothing() -> None:
    window = SlidingWindow("w", limit=3, window=10.0, max_keys=10)
    for _ in range(3):
        assert window.take("k", 19.0).allowed  # window [10, 20)
    assert not window.take("k", 5.0).allowed  # back into [0, 10): nothing was reset
    assert not window.take("k", 21.0).allowed  # [20, 30): the 3 weigh 2.7, + 1 > 3
    assert window.take("k", 24.0).allowed  # they weigh 1.8, + 1 <= 3
    assert not window.take("k", 15.0).allowed  # back again: the previous 3 weigh fully


def test_sliding_window_cost_above_limit_is_denied_without_consuming() -> None:
    window = SlidingWindow("w", limit=2, window=1.0, max_keys=10)
    big = window.take("k", 0.0, cost=3)
    assert not big.allowed and big.retry_after == 0.0 == big.reset
    assert len(window) == 0
    assert window.take("k", 0.0, cost=2).allowed


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(1, 6),
    window=st.sampled_from([1.0, 2.5, 10.0]),
    steps=st.lists(st.tuples(st.floats(0.0, 3.0), st.integers(1, 3)), max_size=60),
)
def test_sliding_window_never_exceeds_limit_in_a_fixed_window(
    limit: int, window: float, steps: list[tuple[float, int]]
) -> None:
    limiter = SlidingWindow("w", limit, window, max_keys=4)
    now = 0.0
    per_window: dict[int, int] = {}
    for gap, cost in steps:
        now += gap
        decision = limiter.take("k", now, cost)
        assert decision.remaining >= 0 and decision.reset >= 0
        assert (decision.retry_after is None) == decision.allowed
        if decision.allowed:
            index = math.floor(now / window)
            per_window[index] = per_window.get(index, 0) + cost
    assert all(count <= limit for count in per_window.values())


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(1, 6),
    window=st.sampled_from([1.0, 4.0]),
    prior=st.lists(st.floats(0.0, 2.0), max_size=15),
    cost=st.integers(1, 6),
)
def test_sliding_window_retry_after_is_exact(
    limit: int, window: float, prior: list[float], cost: int
) -> None:
    cost = min(cost, limit)
    limiter = SlidingWindow("w", limit, window, max_keys=4)
    now = 0.0
    for gap in prior:
        now += gap
        limiter.take("k", now)
    decision = limiter.take("k", now, cost)
    if decision.allowed:
        return
    assert decision.retry_after is not None and decision.retry_after > 0
    if decision.retry_after > 1e-3:  # denied takes consume nothing
        assert not limiter.take("k", now + decision.retry_after - 1e-3, cost).allowed
    assert limiter.take("k", now + decision.retry_after + 1e-9, cost).allowed


def test_sliding_window_flood_is_bounded() -> None:
    limiter = SlidingWindow("w", limit=1, window=60.0, max_keys=100)
    for i in range(1000):
        limiter.take(f"k{i}", 0.0)
    assert len(limiter) == 100 and limiter.evictions == 900


# ------------------------------------------------------------------ config & headers


def test_limiter_for_builds_from_config() -> None:
    tb = limiter_for(m.RateLimit("per-client", "token_bucket", rate=10.0, burst=20))
    assert isinstance(tb, TokenBucket) and tb.policy_header() == '"per-client";q=20;w=2'
    sw = limiter_for(m.RateLimit("hourly", "sliding_window", limit=1000, window=3600.0))
    assert isinstance(sw, SlidingWindow) and sw.policy_header() == '"hourly";q=1000;w=3600'
    small = TokenBucket("fast", rate=100.0, burst=1, max_keys=1)
    assert small.policy_header() == '"fast";q=1;w=1'  # w is a non-zero integer
    odd = TokenBucket('a"b\\c\u00e9', rate=1.0, burst=1, max_keys=1)
    assert odd.policy_header() == '"a\\"b\\\\c?";q=1;w=1'


def _decision(
    allowed: bool, remaining: int, reset: float, retry: float | None = None
) -> RateDecision:
    return RateDecision(allowed, 10, remaining, reset, retry)


def test_rate_limit_headers_reports_most_restrictive_and_retry_after() -> None:
    a = TokenBucket("per-client", rate=1.0, burst=10, max_keys=1)
    b = SlidingWindow("per-route", limit=100, window=60.0, max_keys=1)
    allowed = rate_limit_headers([(a, _decision(True, 7, 3.2)), (b, _decision(True, 90, 59.0))])
    assert allowed == [
        ("ratelimit-policy", '"per-client";q=10;w=10, "per-route";q=100;w=60'),
        ("ratelimit", '"per-client";r=7;t=4'),
    ]
    denied = dict(
        rate_limit_headers([(a, _decision(True, 3, 7.0)), (b, _decision(False, 0, 59.5, 0.2))])
    )
    assert denied["ratelimit"] == '"per-route";r=0;t=60'
    assert denied["retry-after"] == "1"  # at least 1
    two = dict(
        rate_limit_headers([(a, _decision(False, 0, 9.0, 4.1)), (b, _decision(False, 0, 2.0, 1.5))])
    )
    assert two["retry-after"] == "5"  # every denying limit must recover
    assert two["ratelimit"] == '"per-client";r=0;t=9'  # tie on remaining: longer reset
    assert rate_limit_headers([]) == []


def test_rate_limit_headers_lists_a_limiter_once() -> None:
    a = TokenBucket("x", rate=1.0, burst=1, max_keys=1)
    headers = dict(rate_limit_headers([(a, _decision(True, 0, 1.0)), (a, _decision(True, 0, 1.0))]))
    assert headers["ratelimit-policy"] == '"x";q=1;w=1'


_ITEM = re.compile(r'"[^"\\]*";r=\d+;t=\d+')


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 50), st.floats(0, 1e5), st.floats(0, 1e5)),
        min_size=1,
        max_size=4,
    )
)
def test_rate_limit_headers_are_well_formed(
    raw: list[tuple[bool, int, float, float]],
) -> None:
    pairs = [
        (TokenBucket(f"l{i}", 1.0, 5, 1), RateDecision(ok, 5, rem, reset, None if ok else retry))
        for i, (ok, rem, reset, retry) in enumerate(raw)
    ]
    headers = dict(rate_limit_headers(pairs))
    assert _ITEM.fullmatch(headers["ratelimit"])
    assert ("retry-after" in headers) == any(not ok for ok, *_ in raw)
    if "retry-after" in headers:
        wait = int(headers["retry-after"])
        assert wait >= 1
        assert all(wait >= retry for ok, _, _, retry in raw if not ok)


# ------------------------------------------------------------------------ keys


def _limit(*parts: m.RateKeyPart, missing: str = "skip") -> m.RateLimit:
    return m.RateLimit("l", "token_bucket", key=parts, rate=1, burst=1, missing_key=missing)  # type: ignore[arg-type]


def _key(config: m.RateLimit, **kw: object) -> str | None:
    args: dict[str, object] = {"client_ip": "203.0.113.7", "route": "r", "claims": None}
    args["headers"] = ()
    args.update(kw)
    return rate_limit_key(config, **args)  # type: ignore[arg-type]


def test_rate_limit_key_parts() -> None:
    config = _limit(
        m.RateKeyPart("client_ip"),
        m.RateKeyPart("route"),
        m.RateKeyPart("claim", path=("tenant", "id")),
        m.RateKeyPart("header", name="x-api-key"),
    )
    key = _key(
        config,
        claims={"tenant": {"id": "acme"}},
        headers=[("X-Api-Key", "k1"), ("x-api-key", "k2")],
    )
    assert key == "11:203.0.113.7" + "1:r" + '6:"acme"' + "2:k1"


def test_rate_limit_key_is_unambiguous() -> None:
    config = _limit(m.RateKeyPart("header", name="a"), m.RateKeyPart("header", name="b"))
    one = _key(config, headers=[("a", "a|b"), ("b", "c")])
    two = _key(config, headers=[("a", "a"), ("b", "b|c")])
    assert one != two
    # A claim "42" (string) and 42 (number) are different users.
    claim = _limit(m.RateKeyPart("claim", path=("sub",)))
    assert _key(claim, claims={"sub": "42"}) != _key(claim, claims={"sub": 42})


def test_missing_part_skips_or_shares() -> None:
    skip = _limit(m.RateKeyPart("claim", path=("sub",)))
    assert _key(skip, claims={}) is None
    assert _key(skip, claims=None) is None
    shared = _limit(m.RateKeyPart("claim", path=("sub",)), missing="shared")
    assert _key(shared, claims={}) == _key(shared, claims=None) == "-"
    header = _limit(m.RateKeyPart("header", name="x-key"), missing="shared")
    assert _key(header) == "-"
    assert _key(header, headers=[("x-key", "")]) == "0:"  # present but empty is not missing


def test_long_parts_are_hashed_so_keys_stay_short() -> None:
    config = _limit(m.RateKeyPart("header", name="x-key"), m.RateKeyPart("client_ip"))
    key = _key(config, headers=[("x-key", "z" * 10_000)])
    assert key is not None and len(key) < 100
    assert key.startswith("h") and key.endswith("11:203.0.113.7")


_part_text = st.text(st.characters(codec="utf-8"), max_size=MAX_PLAIN_PART + 10)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_part_text, _part_text), st.tuples(_part_text, _part_text))
def test_rate_limit_keys_are_injective(a: tuple[str, str], b: tuple[str, str]) -> None:
    config = _limit(m.RateKeyPart("header", name="x"), m.RateKeyPart("header", name="y"))
    key_a = _key(config, headers=[("x", a[0]), ("y", a[1])])
    key_b = _key(config, headers=[("x", b[0]), ("y", b[1])])
    assert (key_a == key_b) == (a == b)
    assert key_a is not None and len(key_a) <= 2 * (MAX_PLAIN_PART + 4)
