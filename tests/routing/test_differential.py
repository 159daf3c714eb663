"""The compiled route table answers exactly as the reference linear scan.

Generated, deliberately colliding tables (see ``strategies.py``); the same
properties run for longer in ``fuzz/fuzz_router.py``. Regression tests for bugs the
properties found are at the end, as plain examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from strategies import (
    Extension,
    Recased,
    Scenario,
    extensions,
    large_scenarios,
    recased_scenarios,
    run_append,
    run_explain,
    run_header_case,
    run_large,
    run_lazy,
    run_reference,
    scenarios,
    summary,
)

from gwcore.config import load_config
from gwcore.routing import RouteRequest, RouteTable, reference_match

PROPERTY = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(scenarios())
def test_compiled_table_agrees_with_reference_on_complete_requests(scenario: Scenario) -> None:
    run_reference(scenario)


@PROPERTY
@given(scenarios())
def test_lazy_claims_and_body_ask_at_the_same_route_and_resume_to_the_same_decision(
    scenario: Scenario,
) -> None:
    run_lazy(scenario)


@PROPERTY
@given(extensions())
def test_appending_a_route_never_changes_an_earlier_winner(extension: Extension) -> None:
    run_append(extension)


@PROPERTY
@given(recased_scenarios())
def test_header_name_case_never_changes_the_decision(recased: Recased) -> None:
    run_header_case(recased)


@PROPERTY
@given(scenarios())
def test_explain_reports_the_decision_match_gives(scenario: Scenario) -> None:
    run_explain(scenario)


@settings(PROPERTY, max_examples=60)
@given(large_scenarios())
def test_three_hundred_route_tables_agree_with_reference(scenario: Scenario) -> None:
    run_large(scenario)


# ----------------------------------------------------------------- regressions


def _routes(*matches: dict[str, Any]) -> dict[str, Any]:
    return {
        "routes": [
            {"name": f"r{i}", "match": match, "direct_response": {"status": 200}}
            for i, match in enumerate(matches)
        ]
    }


def _agree(raw: dict[str, Any], request: RouteRequest) -> tuple[Any, ...]:
    config = load_config(raw)
    got = summary(RouteTable(config).match(request))
    assert got == summary(reference_match(config, request))
    return got


def test_case_insensitive_prefix_longer_than_the_path_once_lower_cased() -> None:
    # 'İ'.lower() is 'i̇' (two code points): the lowered path is longer than the path,
    # and the case-insensitive prefix '/i̇' (3 code points) is a prefix of it.
    raw = _routes({"prefix": "/İ", "case_sensitive": False})
    assert _agree(raw, RouteRequest("GET", "/İ")) == ("Matched", "default", 0)
    assert _agree(raw, RouteRequest("GET", "/İx")) == ("Matched", "default", 0)
