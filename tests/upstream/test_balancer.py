"""Load balancers: fairness, weights, exclusion, P2C, consistent hashing, determinism."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gwcore.config.model import Cluster, Endpoint, LbPolicy
from gwcore.upstream import (
    Balancer,
    LeastRequestBalancer,
    PickContext,
    RandomBalancer,
    RingHashBalancer,
    RoundRobinBalancer,
    make_balancer,
)


def endpoints(n: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}", 8080) for i in range(n)]


A, B, C, D = endpoints(4)
POLICIES: list[LbPolicy] = ["round_robin", "least_request", "random", "ring_hash"]


def draws(rng: random.Random) -> PickContext:
    return PickContext(draws=(rng.random(), rng.random()), hash_key=str(rng.random()))


# --- round robin ------------------------------------------------------------------


def test_round_robin_cycles_through_endpoints_in_order() -> None:
    balancer = RoundRobinBalancer([A, B, C])
    assert [balancer.pick(PickContext()) for _ in range(6)] == [A, B, C, A, B, C]


def test_round_robin_weights_are_smooth_like_nginx() -> None:
    balancer = RoundRobinBalancer([A, B, C], {A: 5, B: 1, C: 1})
    assert [balancer.pick(PickContext()) for _ in range(7)] == [A, A, B, A, C, A, A]


@given(st.lists(st.integers(1, 6), min_size=1, max_size=6), st.integers(1, 4))
def test_round_robin_picks_each_endpoint_exactly_weight_times_per_cycle(
    weights: list[int], cycles: int
) -> None:
    eps = endpoints(len(weights))
    balancer = RoundRobinBalancer(eps, dict(zip(eps, weights, strict=True)))
    picks = Counter(balancer.pick(PickContext()) for _ in range(sum(weights) * cycles))
    assert picks == {e: w * cycles for e, w in zip(eps, weights, strict=True)}


def test_round_robin_skips_excluded_and_stays_fair_among_the_rest() -> None:
    balancer = RoundRobinBalancer([A, B, C, D])
    context = PickContext(excluded=frozenset({B}))
    picks = [balancer.pick(context) for _ in range(30)]
    assert B not in picks
    assert Counter(picks) == {A: 10, C: 10, D: 10}


def test_excluded_endpoint_rejoins_rotation_when_healthy_again() -> None:
    balancer = RoundRobinBalancer([A, B])
    for _ in range(5):
        assert balancer.pick(PickContext(excluded=frozenset({B}))) == A
    assert Counter(balancer.pick(PickContext()) for _ in range(10)) == {A: 5, B: 5}


# --- every policy -----------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_returns_none_when_all_endpoints_are_excluded(policy: LbPolicy) -> None:
    balancer = make_balancer(Cluster("c", (A, B), lb=policy))
    assert balancer.pick(PickContext(excluded=frozenset({A, B}))) is None


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_returns_none_for_an_empty_cluster(policy: LbPolicy) -> None:
    assert make_balancer(Cluster("c", (), lb=policy)).pick(PickContext()) is None


@pytest.mark.parametrize("policy", POLICIES)
@given(seed=st.integers(0, 2**32), excluded=st.sets(st.sampled_from(endpoints(5))))
def test_every_policy_never_picks_an_excluded_endpoint(
    policy: LbPolicy, seed: int, excluded: set[Endpoint]
) -> None:
    balancer = make_balancer(Cluster("c", tuple(endpoints(5)), lb=policy), min_ring_size=64)
    rng = random.Random(seed)
    for _ in range(20):
        context = PickContext((rng.random(), rng.random()), str(rng.random()), frozenset(excluded))
        picked = balancer.pick(context)
        assert (picked is None) == (len(excluded) == 5)
        assert picked not in excluded


@pytest.mark.parametrize("policy", POLICIES)
def test_same_draws_give_the_same_picks(policy: LbPolicy) -> None:
    def run() -> list[Endpoint | None]:
        balancer = make_balancer(Cluster("c", tuple(endpoints(6)), lb=policy))
        rng = random.Random(7)
        picks = []
        for _ in range(200):
            picked = balancer.pick(draws(rng))
            picks.append(picked)
            if picked is not None and rng.random() < 0.6:
                balancer.on_request_start(picked)
        return picks

    assert run() == run()


@pytest.mark.parametrize("policy", ["random", "ring_hash"])
def test_weights_shift_the_share_of_picks(policy: LbPolicy) -> None:
    balancer = make_balancer(Cluster("c", (A, B), lb=policy), {A: 3, B: 1})
    rng = random.Random(1)
    picks = Counter(balancer.pick(draws(rng)) for _ in range(8000))
    assert 0.70 < picks[A] / 8000 < 0.80


def test_make_balancer_uses_the_cluster_policy() -> None:
    kinds = {p: type(make_balancer(Cluster("c", (A,), lb=p))) for p in POLICIES}
    assert kinds == {
        "round_robin": RoundRobinBalancer,
        "least_request": LeastRequestBalancer,
        "random": RandomBalancer,
        "ring_hash": RingHashBalancer,
    }


def test_invalid_weights_and_duplicate_endpoints_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RoundRobinBalancer([A], {A: 0})
    with pytest.raises(ValueError, match="distinct"):
        RandomBalancer([A, A])
    with pytest.raises(ValueError, match="unknown"):
        RandomBalancer([A], {B: 2})


def test_draws_outside_unit_interval_are_refused() -> None:
    with pytest.raises(ValueError):
        PickContext(draws=(1.0, 0.0))


def test_request_end_without_start_is_a_bookkeeping_error() -> None:
    balancer = LeastRequestBalancer([A])
    balancer.on_request_start(A)
    balancer.on_request_end(A)
    with pytest.raises(ValueError):
        balancer.on_request_end(A)


# --- least request ----------------------------------------------------------------


def _loaded(balancer: Balancer, load: dict[Endpoint, int]) -> None:
    for endpoint, count in load.items():
        for _ in range(count):
            balancer.on_request_start(endpoint)


@given(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True))
def test_least_request_picks_the_less_loaded_of_its_two_candidates(d1: float, d2: float) -> None:
    balancer = LeastRequestBalancer([A, B])
    _loaded(balancer, {A: 3, B: 1})
    assert balancer.pick(PickContext(draws=(d1, d2))) == B


def test_least_request_compares_exactly_the_two_drawn_candidates() -> None:
    balancer = LeastRequestBalancer([A, B, C, D])
    _loaded(balancer, {A: 5, B: 2, C: 0, D: 9})
    # draw 0.0 -> A first; among (B, C, D) draw 0.0 -> B: B is less loaded than A.
    assert balancer.pick(PickContext(draws=(0.0, 0.0))) == B
    # A first, then D (last third of the rest): A wins; C was never a candidate.
    assert balancer.pick(PickContext(draws=(0.0, 0.9))) == A


def test_least_request_tie_goes_to_the_first_candidate() -> None:
    balancer = LeastRequestBalancer([A, B, C])
    assert balancer.pick(PickContext(draws=(0.0, 0.9))) == A
    assert balancer.pick(PickContext(draws=(0.9, 0.0))) == C


def test_least_request_counts_load_per_unit_of_weight() -> None:
    balancer = LeastRequestBalancer([A, B], {A: 4, B: 1})
    _loaded(balancer, {A: 3, B: 1})  # A: 4/4 = 1 per weight; B: 2/1 = 2 per weight
    assert balancer.pick(PickContext(draws=(0.99, 0.0))) == A


def test_least_request_keeps_open_requests_proportional_to_weights() -> None:
    balancer = LeastRequestBalancer([A, B, C], {A: 3, B: 1, C: 2})
    rng = random.Random(5)
    for _ in range(600):
        picked = balancer.pick(draws(rng))
        assert picked is not None
        balancer.on_request_start(picked)
    loads = [balancer.active_requests(e) for e in (A, B, C)]
    assert all(abs(got - want) <= 3 for got, want in zip(loads, [300, 100, 200], strict=True))


def test_least_request_spreads_load_evenly_when_requests_stay_open() -> None:
    balancer = LeastRequestBalancer(endpoints(4))
    rng = random.Random(3)
    for _ in range(400):
        picked = balancer.pick(draws(rng))
        assert picked is not None
        balancer.on_request_start(picked)
    loads = [balancer.active_requests(e) for e in balancer.endpoints]
    assert max(loads) - min(loads) <= 2


# --- ring hash --------------------------------------------------------------------

KEYS = [f"client-{i}" for i in range(4000)]


def _owners(balancer: Balancer, excluded: frozenset[Endpoint] = frozenset()) -> dict[str, Endpoint]:
    owners = {}
    for key in KEYS:
        picked = balancer.pick(PickContext(hash_key=key, excluded=excluded))
        assert picked is not None
        owners[key] = picked
    return owners


def test_ring_hash_sends_the_same_key_to_the_same_endpoint() -> None:
    balancer = RingHashBalancer(endpoints(5))
    again = RingHashBalancer(endpoints(5))
    first = _owners(balancer)
    assert _owners(balancer) == first
    assert _owners(again) == first  # stable across instances (and processes): no hash()


def test_ring_hash_treats_str_keys_as_utf8_bytes() -> None:
    balancer = RingHashBalancer(endpoints(5))
    assert balancer.pick(PickContext(hash_key="ключ")) == balancer.pick(
        PickContext(hash_key="ключ".encode())
    )


def test_ring_hash_spreads_keys_roughly_evenly() -> None:
    counts = Counter(_owners(RingHashBalancer(endpoints(8))).values())
    assert all(0.6 < n / (len(KEYS) / 8) < 1.4 for n in counts.values())


def test_ring_size_is_at_least_the_configured_minimum() -> None:
    assert RingHashBalancer(endpoints(3)).ring_size >= 1024
    assert RingHashBalancer(endpoints(3), min_ring_size=4096).ring_size >= 4096
    assert RingHashBalancer(endpoints(3), min_ring_size=16, max_ring_size=16).ring_size <= 16


def test_removing_an_endpoint_moves_only_its_keys() -> None:
    eps = endpoints(10)
    before = _owners(RingHashBalancer(eps))
    after = _owners(RingHashBalancer(eps[:3] + eps[4:]))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == eps[3]}
    assert 0.05 < len(moved) / len(KEYS) < 0.15  # ~1/10


def test_adding_an_endpoint_moves_only_keys_to_the_new_one() -> None:
    eps = endpoints(11)
    before = _owners(RingHashBalancer(eps[:10]))
    after = _owners(RingHashBalancer(eps))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert all(after[k] == eps[10] for k in moved)
    assert 0.05 < len(moved) / len(KEYS) < 0.14  # ~1/11


def test_excluding_an_endpoint_moves_only_its_keys_to_the_next_on_the_ring() -> None:
    balancer = RingHashBalancer(endpoints(6))
    before = _owners(balancer)
    after = _owners(balancer, excluded=frozenset({B}))
    assert {k for k in KEYS if before[k] != after[k]} == {k for k in KEYS if before[k] == B}
    assert B not in after.values()


@given(st.sets(st.sampled_from(endpoints(6)), max_size=5), st.text(max_size=20))
def test_ring_hash_walk_skips_only_excluded_endpoints(excluded: set[Endpoint], key: str) -> None:
    balancer = RingHashBalancer(endpoints(6), min_ring_size=64)
    unrestricted = balancer.pick(PickContext(hash_key=key))
    picked = balancer.pick(PickContext(hash_key=key, excluded=frozenset(excluded)))
    assert picked not in excluded
    if unrestricted not in excluded:
        assert picked == unrestricted


def test_ring_hash_without_key_uses_the_draw() -> None:
    balancer = RingHashBalancer(endpoints(4))
    picks = Counter(balancer.pick(PickContext(draws=(i / 1000, 0.0))) for i in range(1000))
    assert len(picks) == 4
