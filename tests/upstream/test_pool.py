"""Connection-pool decisions, one behaviour at a time (no sockets, no clock)."""

from __future__ import annotations

from typing import Any

import pytest

from gwcore.config.model import Cluster, Endpoint
from gwcore.upstream import (
    ConnectionPool,
    OpenConnection,
    PoolLimits,
    PoolStatistics,
    Queued,
    Rejected,
    UseConnection,
)

A = Endpoint("10.0.0.1", 80)
B = Endpoint("10.0.0.2", 80)


def h1(**limits: Any) -> ConnectionPool:
    return ConnectionPool("http1", PoolLimits(**limits))


def h2(**limits: Any) -> ConnectionPool:
    return ConnectionPool("http2", PoolLimits(**limits))


def ready_connection(pool: ConnectionPool, endpoint: Endpoint, ref: object, now: float) -> int:
    """Acquire for ``ref``, connect, release: leaves one idle connection; returns its id."""
    opened = pool.acquire(endpoint, ref, now)
    assert isinstance(opened, OpenConnection)
    assert pool.connected(opened.conn, now) == [UseConnection(opened.conn, ref)]
    assert pool.released(opened.conn, True, now) == []
    return opened.conn


# --- opening and reusing ----------------------------------------------------------


def test_first_request_opens_a_connection_and_gets_it_when_connected() -> None:
    pool = h1()
    decision = pool.acquire(A, "r1", now=0.0)
    assert decision == OpenConnection(1, A, "r1")
    assert pool.statistics() == PoolStatistics(1, 0, 0, 0, 0, 1)
    assert pool.connected(1, now=0.1) == [UseConnection(1, "r1")]
    assert pool.statistics() == PoolStatistics(0, 0, 1, 0, 1, 0)


def test_idle_keep_alive_connection_is_reused_without_opening() -> None:
    pool = h1()
    conn = ready_connection(pool, A, "r1", 0.0)
    assert pool.acquire(A, "r2", 1.0) == UseConnection(conn, "r2")


def test_most_recently_used_idle_connection_is_chosen_first() -> None:
    pool = h1()
    one, two = pool.acquire(A, "r1", 0.0), pool.acquire(A, "r2", 0.0)
    assert isinstance(one, OpenConnection) and isinstance(two, OpenConnection)
    pool.connected(one.conn, 0.0)
    pool.connected(two.conn, 0.0)
    pool.released(one.conn, True, 1.0)
    pool.released(two.conn, True, 2.0)
    assert pool.acquire(A, "r3", 3.0) == UseConnection(two.conn, "r3")


def test_connections_are_per_endpoint() -> None:
    pool = h1()
    ready_connection(pool, A, "r1", 0.0)
    assert isinstance(pool.acquire(B, "r2", 0.0), OpenConnection)


# --- limits and queueing ----------------------------------------------------------


def test_requests_beyond_max_connections_per_host_are_queued() -> None:
    pool = h1(max_connections_per_host=1)
    assert isinstance(pool.acquire(A, "r1", 0.0), OpenConnection)
    assert pool.acquire(A, "r2", 0.0) == Queued("r2")
    assert pool.statistics().connecting == 1


def test_released_connection_goes_to_the_oldest_queued_request() -> None:
    pool = h1(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.acquire(A, "r2", 0.0)
    pool.acquire(A, "r3", 0.0)
    assert pool.connected(1, 0.0) == [UseConnection(1, "r1")]
    assert pool.released(1, True, 1.0) == [UseConnection(1, "r2")]
    assert pool.released(1, True, 2.0) == [UseConnection(1, "r3")]
    assert pool.released(1, True, 3.0) == []


def test_full_pending_queue_rejects_with_pool_overflow() -> None:
    pool = h1(max_connections_per_host=1, max_pending=2)
    pool.acquire(A, "r1", 0.0)
    pool.acquire(A, "r2", 0.0)
    assert pool.acquire(A, "r3", 0.0) == Rejected("r3", "pool_overflow")


def test_non_reusable_release_frees_room_for_a_new_connection() -> None:
    pool = h1(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.connected(1, 0.0)
    assert pool.acquire(A, "r2", 0.0) == Queued("r2")
    assert pool.released(1, False, 1.0) == [OpenConnection(2, A, "r2")]
    assert pool.connection_info(1) is None


def test_acquiring_a_ref_that_is_already_waiting_is_an_error() -> None:
    pool = h1()
    pool.acquire(A, "r1", 0.0)
    with pytest.raises(ValueError):
        pool.acquire(A, "r1", 0.0)


# --- failures ---------------------------------------------------------------------


def test_connect_failure_rejects_waiters_it_was_meant_to_serve() -> None:
    pool = h1(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.acquire(A, "r2", 0.0)
    assert pool.connect_failed(1) == [
        Rejected("r1", "connect_failed"),
        Rejected("r2", "connect_failed"),
    ]
    assert pool.statistics() == PoolStatistics(0, 0, 0, 0, 0, 0)


def test_connect_failure_keeps_the_oldest_waiters_other_attempts_will_serve() -> None:
    pool = h1(max_connections_per_host=2)
    assert pool.acquire(A, "r1", 0.0) == OpenConnection(1, A, "r1")
    assert pool.acquire(A, "r2", 0.0) == OpenConnection(2, A, "r2")
    assert pool.connect_failed(1) == [Rejected("r2", "connect_failed")]
    assert pool.connected(2, 0.0) == [UseConnection(2, "r1")]


def test_connect_failure_never_opens_a_replacement_connection() -> None:
    pool = h1(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    decisions = pool.connect_failed(1)
    assert not any(isinstance(d, OpenConnection) for d in decisions)


def test_closing_a_busy_connection_opens_one_for_queued_requests() -> None:
    pool = h1(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.connected(1, 0.0)
    pool.acquire(A, "r2", 0.0)
    assert pool.closed(1) == [OpenConnection(2, A, "r2")]


def test_closing_an_unknown_connection_is_ignored() -> None:
    pool = h1()
    conn = ready_connection(pool, A, "r1", 0.0)
    assert pool.expire_idle(100.0) == [conn]
    assert pool.closed(conn) == []


def test_events_for_unknown_connections_are_errors() -> None:
    pool = h1()
    with pytest.raises(ValueError):
        pool.connected(42, 0.0)
    with pytest.raises(ValueError):
        pool.released(42, True, 0.0)


# --- time -------------------------------------------------------------------------


def test_idle_connections_expire_after_idle_timeout() -> None:
    pool = h1(idle_timeout=10.0)
    conn = ready_connection(pool, A, "r1", 0.0)
    assert pool.next_deadline() == 10.0
    assert pool.expire_idle(9.9) == []
    assert pool.expire_idle(10.0) == [conn]
    assert pool.statistics() == PoolStatistics(0, 0, 0, 0, 0, 0)


def test_busy_connections_never_expire() -> None:
    pool = h1(idle_timeout=1.0)
    pool.acquire(A, "r1", 0.0)
    pool.connected(1, 0.0)
    assert pool.expire_idle(100.0) == []


def test_lifo_reuse_lets_the_spare_connection_age_out() -> None:
    pool = h1(idle_timeout=10.0)
    pool.acquire(A, "r1", 0.0)
    pool.acquire(A, "r2", 0.0)
    pool.connected(1, 0.0)
    pool.connected(2, 0.0)
    pool.released(1, True, 0.0)
    pool.released(2, True, 0.0)
    for t in range(1, 20):  # one request at a time keeps reusing connection 2
        assert pool.acquire(A, f"s{t}", float(t)) == UseConnection(2, f"s{t}")
        pool.released(2, True, float(t))
    assert pool.expire_idle(20.0) == [1]


def test_requests_queued_too_long_time_out_oldest_first() -> None:
    pool = h1(max_connections_per_host=1, queue_timeout=5.0)
    pool.acquire(A, "r1", 0.0)
    pool.acquire(A, "r2", 1.0)
    pool.acquire(B, "r3", 2.0)
    assert pool.next_deadline() == 5.0
    assert pool.queue_timeouts(4.0) == []
    assert pool.queue_timeouts(6.5) == [
        Rejected("r1", "queue_timeout"),
        Rejected("r2", "queue_timeout"),
    ]
    assert pool.pending_requests() == ("r3",)


def test_cancelled_request_leaves_the_queue_and_its_connection_idles() -> None:
    pool = h1()
    pool.acquire(A, "r1", 0.0)
    assert pool.cancel("r1") is True
    assert pool.cancel("r1") is False
    assert pool.connected(1, 0.0) == []
    assert pool.statistics() == PoolStatistics(0, 1, 0, 0, 0, 0)


# --- HTTP/2 -----------------------------------------------------------------------


def test_h2_connection_multiplexes_waiters_up_to_its_stream_limit() -> None:
    pool = h2(assumed_max_concurrent_streams=2, max_connections_per_host=1)
    assert pool.acquire(A, "r1", 0.0) == OpenConnection(1, A, "r1")
    assert pool.acquire(A, "r2", 0.0) == Queued("r2")  # covered by the same connection
    assert pool.acquire(A, "r3", 0.0) == Queued("r3")
    assert pool.connected(1, 0.0) == [UseConnection(1, "r1"), UseConnection(1, "r2")]
    assert pool.released(1, True, 1.0) == [UseConnection(1, "r3")]


def test_h2_opens_a_second_connection_only_when_the_first_cannot_cover_waiters() -> None:
    pool = h2(assumed_max_concurrent_streams=2)
    assert isinstance(pool.acquire(A, "r1", 0.0), OpenConnection)
    assert pool.acquire(A, "r2", 0.0) == Queued("r2")
    assert pool.acquire(A, "r3", 0.0) == OpenConnection(2, A, "r3")


def test_h2_settings_raise_and_lower_the_stream_limit() -> None:
    pool = h2(assumed_max_concurrent_streams=1, max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.connected(1, 0.0)
    assert pool.acquire(A, "r2", 0.0) == Queued("r2")
    assert pool.settings(1, 3) == [UseConnection(1, "r2")]
    assert pool.acquire(A, "r3", 0.0) == UseConnection(1, "r3")
    assert pool.settings(1, 1) == []
    assert pool.acquire(A, "r4", 0.0) == Queued("r4")
    pool.released(1, True, 0.0)
    pool.released(1, True, 0.0)
    assert pool.released(1, True, 0.0) == [UseConnection(1, "r4")]


def test_h2_goaway_drains_the_connection_then_forgets_it() -> None:
    pool = h2(max_connections_per_host=1)
    pool.acquire(A, "r1", 0.0)
    pool.connected(1, 0.0)
    pool.acquire(A, "r2", 0.0)
    assert pool.released(1, False, 0.0) == []
    info = pool.connection_info(1)
    assert info is not None and info.state == "draining" and info.active_requests == 1
    assert pool.acquire(A, "r3", 0.0) == Queued("r3")
    assert pool.released(1, True, 0.0) == [OpenConnection(2, A, "r3")]
    assert pool.connection_info(1) is None


def test_settings_on_an_http1_pool_are_an_error() -> None:
    pool = h1()
    pool.acquire(A, "r1", 0.0)
    with pytest.raises(ValueError):
        pool.settings(1, 10)


def test_pool_for_cluster_takes_protocol_and_connection_limit() -> None:
    cluster = Cluster("c", (A,), protocol="http2", max_connections_per_host=3)
    pool = ConnectionPool.for_cluster(cluster)
    assert pool.protocol == "http2"
    assert pool.limits.max_connections_per_host == 3
