"""The pool against a model: random event sequences never break its promises.

The model tracks what the engine would know: which requests wait (in arrival order per
endpoint), which run on which connection, and the stream limit each connection was
told. Every decision the pool returns is checked against it as it arrives.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gwcore.config.model import Endpoint, UpstreamProtocol
from gwcore.upstream import (
    ConnectionPool,
    Decision,
    OpenConnection,
    PoolLimits,
    Queued,
    Rejected,
    UseConnection,
)

ENDPOINTS = [Endpoint("10.0.0.1", 80), Endpoint("10.0.0.2", 80)]
QUEUE_TIMEOUT = 5.0
LIMITS = PoolLimits(
    max_connections_per_host=2,
    max_pending=4,
    idle_timeout=10.0,
    queue_timeout=QUEUE_TIMEOUT,
    assumed_max_concurrent_streams=2,
)


class PoolModel(RuleBasedStateMachine):
    protocol: UpstreamProtocol = "http1"

    def __init__(self) -> None:
        super().__init__()
        self.pool = ConnectionPool(self.protocol, LIMITS)
        self.now = 0.0
        self.next_ref = 0
        self.acquired: set[int] = set()
        self.outcome: dict[int, str] = {}  # use / reject / cancel / timeout: set once
        self.waiting: dict[Endpoint, list[int]] = {e: [] for e in ENDPOINTS}
        self.queued_at: dict[int, float] = {}
        self.endpoint_of: dict[int, Endpoint] = {}  # conn -> endpoint
        self.connecting: set[int] = set()
        self.running: dict[int, list[int]] = {}  # conn -> refs in flight
        self.stream_limit: dict[int, int] = {}  # conn -> what we told the pool
        self.draining: set[int] = set()  # told reusable=False, requests still running

    # --- applying decisions -------------------------------------------------------

    def finish(self, ref: int, how: str) -> None:
        assert ref not in self.outcome, f"request {ref} answered twice"
        self.outcome[ref] = how
        endpoint = next(e for e, refs in self.waiting.items() if ref in refs)
        self.waiting[endpoint].remove(ref)

    def apply(self, decisions: list[Decision]) -> None:
        for decision in decisions:
            match decision:
                case UseConnection(conn, ref):
                    assert isinstance(ref, int)
                    endpoint = self.endpoint_of[conn]
                    assert self.waiting[endpoint][:1] == [ref], "FIFO order broken"
                    assert conn not in self.connecting
                    limit = 1 if self.protocol == "http1" else self.stream_limit[conn]
                    assert len(self.running[conn]) < limit, "stream opened over the limit"
                    self.finish(ref, "use")
                    self.running[conn].append(ref)
                case OpenConnection(conn, endpoint, ref):
                    assert conn not in self.endpoint_of, "connection id reused"
                    assert ref in self.waiting[endpoint]
                    self.endpoint_of[conn] = endpoint
                    self.connecting.add(conn)
                    self.running[conn] = []
                    self.stream_limit[conn] = LIMITS.assumed_max_concurrent_streams
                case Rejected(ref, _):
                    assert isinstance(ref, int)
                    self.finish(ref, "reject")
                case Queued(ref):
                    assert isinstance(ref, int)
                    assert ref in self.waiting[self.endpoint_for_ref(ref)]

    def endpoint_for_ref(self, ref: int) -> Endpoint:
        return next(e for e, refs in self.waiting.items() if ref in refs)

    def forget(self, conn: int) -> None:
        del self.endpoint_of[conn]
        del self.running[conn]
        del self.stream_limit[conn]
        self.connecting.discard(conn)
        self.draining.discard(conn)

    def in_flight(self) -> list[tuple[int, int]]:
        return sorted((conn, ref) for conn, refs in self.running.items() for ref in refs)

    def all_waiting(self) -> list[int]:
        return sorted(ref for refs in self.waiting.values() for ref in refs)

    # --- rules --------------------------------------------------------------------

    @rule(endpoint=st.sampled_from(ENDPOINTS))
    def acquire(self, endpoint: Endpoint) -> None:
        ref = self.next_ref
        self.next_ref += 1
        self.acquired.add(ref)
        self.waiting[endpoint].append(ref)
        self.queued_at[ref] = self.now
        self.apply([self.pool.acquire(endpoint, ref, self.now)])

    @precondition(lambda self: self.connecting)
    @rule(data=st.data())
    def connected(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.connecting)))
        self.connecting.discard(conn)
        self.apply(list(self.pool.connected(conn, self.now)))

    @precondition(lambda self: self.connecting)
    @rule(data=st.data())
    def connect_failed(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.connecting)))
        self.forget(conn)
        decisions = self.pool.connect_failed(conn)
        assert all(d.reason == "connect_failed" for d in decisions)
        self.apply(list(decisions))

    @precondition(lambda self: self.in_flight())
    @rule(data=st.data(), reusable=st.booleans())
    def released(self, data: st.DataObject, reusable: bool) -> None:
        conn, ref = data.draw(st.sampled_from(self.in_flight()))
        self.running[conn].remove(ref)
        if not reusable:
            self.draining.add(conn)
        decisions = self.pool.released(conn, reusable, self.now)
        # A connection that will take no new requests is forgotten with its last one.
        gone = conn in self.draining and not self.running[conn]
        assert (self.pool.connection_info(conn) is None) == gone
        if gone:
            self.forget(conn)
        self.apply(list(decisions))

    @precondition(lambda self: self.endpoint_of)
    @rule(data=st.data())
    def closed(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.endpoint_of)))
        self.forget(conn)  # requests running on it are the engine's to fail
        self.apply(self.pool.closed(conn))

    @precondition(lambda self: self.protocol == "http2" and self.endpoint_of)
    @rule(data=st.data(), limit=st.integers(0, 3))
    def peer_settings(self, data: st.DataObject, limit: int) -> None:
        conn = data.draw(st.sampled_from(sorted(self.endpoint_of)))
        self.stream_limit[conn] = limit
        self.apply(list(self.pool.settings(conn, limit)))

    @rule(dt=st.sampled_from([0.5, 3.0, 11.0]))
    def expire_idle(self, dt: float) -> None:
        self.now += dt
        for conn in self.pool.expire_idle(self.now):
            assert conn not in self.connecting and not self.running[conn]
            assert not self.waiting[self.endpoint_of[conn]]
            self.forget(conn)

    @precondition(lambda self: self.all_waiting())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ref = data.draw(st.sampled_from(self.all_waiting()))
        assert self.pool.cancel(ref) is True
        self.finish(ref, "cancel")

    @rule(dt=st.sampled_from([1.0, 6.0]))
    def queue_timeouts(self, dt: float) -> None:
        self.now += dt
        for rejected in self.pool.queue_timeouts(self.now):
            assert rejected.reason == "queue_timeout"
            assert isinstance(rejected.request_ref, int)
            assert self.now - self.queued_at[rejected.request_ref] >= QUEUE_TIMEOUT
            self.finish(rejected.request_ref, "timeout")
        # Whatever has waited that long is gone.
        assert all(self.now - self.queued_at[r] < QUEUE_TIMEOUT for r in self.all_waiting())

    # --- invariants ---------------------------------------------------------------

    @invariant()
    def pool_agrees_with_model(self) -> None:
        infos = self.pool.connections()
        assert {i.conn for i in infos} == set(self.endpoint_of)
        for info in infos:
            assert info.endpoint == self.endpoint_of[info.conn]
            assert info.active_requests == len(self.running[info.conn])
            assert (info.state == "connecting") == (info.conn in self.connecting)
            assert (info.state == "draining") == (info.conn in self.draining)
        stats = self.pool.statistics()
        assert stats.active_requests == sum(len(r) for r in self.running.values())
        assert stats.connecting + stats.idle + stats.busy + stats.draining == len(infos)

    @invariant()
    def connections_per_host_are_bounded(self) -> None:
        for endpoint in ENDPOINTS:
            count = sum(1 for e in self.endpoint_of.values() if e == endpoint)
            assert count <= LIMITS.max_connections_per_host

    @invariant()
    def http1_connections_carry_one_request_at_most(self) -> None:
        if self.protocol == "http1":
            assert all(len(refs) <= 1 for refs in self.running.values())

    @invariant()
    def pending_queue_is_bounded_and_fifo(self) -> None:
        pending = self.pool.pending_requests()
        assert len(pending) <= LIMITS.max_pending
        assert len(pending) == len(set(pending)) == len(self.all_waiting())
        assert set(pending) == set(self.all_waiting())
        for refs in self.waiting.values():
            assert [r for r in pending if r in refs] == refs

    @invariant()
    def every_request_is_waiting_or_answered_exactly_once(self) -> None:
        waiting = set(self.all_waiting())
        assert not waiting & set(self.outcome)
        assert waiting | set(self.outcome) == self.acquired

    @invariant()
    def waiters_are_never_stranded(self) -> None:
        for endpoint, refs in self.waiting.items():
            if not refs:
                continue
            infos = [i for i in self.pool.connections() if i.endpoint == endpoint]
            # No free slot sits unused while someone waits ...
            assert not any(
                i.state in ("idle", "busy") and i.active_requests < i.max_concurrent_requests
                for i in infos
            )
            # ... and something is under way that will free one (or a SETTINGS update).
            assert any(
                i.state == "connecting"
                or i.active_requests > 0
                or (i.state == "idle" and i.max_concurrent_requests == 0)
                for i in infos
            )


class Http2PoolModel(PoolModel):
    protocol: UpstreamProtocol = "http2"


MACHINE_SETTINGS = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestHttp1Pool = PoolModel.TestCase
TestHttp1Pool.settings = MACHINE_SETTINGS
TestHttp2Pool = Http2PoolModel.TestCase
TestHttp2Pool.settings = MACHINE_SETTINGS
