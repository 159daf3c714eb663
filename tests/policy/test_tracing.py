"""W3C Trace Context: propagate valid traceparent/tracestate, start a trace otherwise."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.policy.tracing import (
    MAX_TRACESTATE,
    TraceContext,
    trace_context,
    valid_traceparent,
    valid_tracestate,
)

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_NEW = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]")


def _bits(*values: int) -> Callable[[int], int]:
    """A deterministic random source returning ``values`` in turn."""
    queue = list(values)

    def draw(bits: int) -> int:
        return queue.pop(0)

    return draw


def _ctx(*headers: tuple[str, str], sampled: bool = False) -> TraceContext:
    return trace_context(list(headers), _bits(0xABC, 0xDEF), sampled=sampled)


def test_valid_traceparent_and_tracestate_are_propagated_unchanged() -> None:
    ctx = _ctx(("traceparent", PARENT), ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"))
    assert ctx == TraceContext(PARENT, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", started=False)
    assert ctx.headers() == [
        ("traceparent", PARENT),
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
    ]


def test_tracestate_lines_are_combined_with_commas() -> None:
    ctx = _ctx(("Tracestate", "a=1"), ("TraceParent", PARENT), ("tracestate", " b=2 ,, c= 3"))
    assert ctx.tracestate == "a=1, b=2 ,, c= 3"
    assert not ctx.started


def test_no_traceparent_starts_a_new_unsampled_trace() -> None:
    ctx = trace_context([("tracestate", "a=1")], _bits(0xABC, 0xDEF))
    assert ctx == TraceContext(f"00-{0xABC:032x}-{0xDEF:016x}-00", None, started=True)


def test_sampled_flag_can_be_requested() -> None:
    assert _ctx(sampled=True).traceparent.endswith("-01")


def test_new_ids_are_never_zero_and_fit_their_width() -> None:
    zero = trace_context([], _bits(0, 0))
    assert zero.traceparent == f"00-{1:032x}-{1:016x}-00"
    wide = trace_context([], _bits(2**200 + 5, 2**100 + 7))
    assert wide.traceparent == f"00-{5:032x}-{7:016x}-00"


@pytest.mark.parametrize(
    "bad",
    [
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # 00 is exact
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper-case
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace-id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero parent-id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        "0-af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
        "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",  # future: needs "-"
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # future: too short
        "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "",
    ],
)
def test_invalid_traceparent_restarts_and_drops_tracestate(bad: str) -> None:
    assert not valid_traceparent(bad)
    ctx = _ctx(("traceparent", bad), ("tracestate", "a=1"))
    assert ctx.started and ctx.tracestate is None and ctx.traceparent != bad


def test_future_versions_are_propagated_as_received() -> None:
    for value in [
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09-what-ever",
    ]:
        assert valid_traceparent(value)
        assert _ctx(("traceparent", value)) == TraceContext(value, None, started=False)
    assert not valid_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-\r\n")


def test_two_traceparent_headers_are_invalid() -> None:
    ctx = _ctx(("traceparent", PARENT), ("traceparent", PARENT))
    assert ctx.started


def test_surrounding_whitespace_of_traceparent_is_ignored() -> None:
    assert _ctx(("traceparent", f" {PARENT}\t")).traceparent == PARENT


@pytest.mark.parametrize(
    "state",
    [
        "UPPER=1",
        "a=1,a=2",  # duplicate key
        "a=",  # empty value
        "a=b,c",  # no "="
        "a=x=y",  # "=" in value
        "@x=1",  # a key starts with a lower-case letter or a digit
        "-a=1",
        ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
        "a=\u00e9",
    ],
)
def test_invalid_tracestate_is_dropped(state: str) -> None:
    assert not valid_tracestate(state)
    assert _ctx(("traceparent", PARENT), ("tracestate", state)).tracestate is None


def test_tracestate_limits_and_valid_keys() -> None:
    assert valid_tracestate("tenant@vendor=x,a_b-c*d/e=1,0abc@sys=y, k= leading space")
    assert valid_tracestate("a=trailing space is OWS ,1a=x")
    assert valid_tracestate(",".join(f"k{i}=v" for i in range(32)))
    long = "a=" + "x" * 250 + ",b=" + "y" * 250 + ",c=" + "z" * 10
    assert len(long) > MAX_TRACESTATE and valid_tracestate(long)
    assert _ctx(("traceparent", PARENT), ("tracestate", long)).tracestate is None
    assert _ctx(("traceparent", PARENT), ("tracestate", " , ")).tracestate is None  # empty


@settings(max_examples=300, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(["traceparent", "tracestate", "TRACEPARENT", "x"]),
            st.one_of(st.just(PARENT), st.text(max_size=60)),
        ),
        max_size=4,
    ),
    a=st.integers(0, 2**128 - 1),
    b=st.integers(0, 2**64 - 1),
)
def test_result_is_always_a_valid_context(headers: list[tuple[str, str]], a: int, b: int) -> None:
    ctx = trace_context(headers, _bits(a, b))
    assert valid_traceparent(ctx.traceparent)
    if ctx.started:
        assert _NEW.fullmatch(ctx.traceparent) and ctx.tracestate is None
    else:
        assert ctx.traceparent in [v.strip(" \t") for _, v in headers]
    if ctx.tracestate is not None:
        assert len(ctx.tracestate) <= MAX_TRACESTATE and valid_tracestate(ctx.tracestate)
        assert "\r" not in ctx.tracestate and "\n" not in ctx.tracestate
