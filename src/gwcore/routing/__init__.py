"""Routing: compile a config's route lists into a decision tree and query it.

>>> from gwcore.config import load_config
>>> from gwcore.routing import RouteTable, RouteRequest, Matched
>>> table = RouteTable(load_config({"routes": [
...     {"name": "hello", "match": {"prefix": "/"},
...      "direct_response": {"status": 200, "body": "hi"}}]}))
>>> decision = table.match(RouteRequest("GET", "/anything"))
>>> isinstance(decision, Matched), decision.route.name
(True, 'hello')
"""

from gwcore.routing.compiler import RouteTable
from gwcore.routing.decision import Decision, Matched, NeedBody, NeedClaims, NoRoute
from gwcore.routing.reference import Explanation, RouteVerdict, explain, reference_match
from gwcore.routing.request import RouteRequest, normalize_host

__all__ = [
    "Decision",
    "Explanation",
    "Matched",
    "NeedBody",
    "NeedClaims",
    "NoRoute",
    "RouteRequest",
    "RouteTable",
    "RouteVerdict",
    "explain",
    "normalize_host",
    "reference_match",
]
