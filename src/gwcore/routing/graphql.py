"""Finding the GraphQL operation a request asks for (graphql-core's parser)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gwcore.routing.request import RequestView

# Bounds on the parse, so a hostile document costs little: graphql-core stops at
# this many tokens. The body itself is bounded by the engine's body limit.
MAX_GRAPHQL_TOKENS = 20_000


def _document_and_name(view: RequestView) -> tuple[str, str | None] | None:
    names = view.query_values("operationName")
    query_name = names[0] if names and names[0] else None
    if view.method in ("GET", "HEAD"):
        docs = view.query_values("query")
        return (docs[0], query_name) if docs else None
    body = view.body
    if body is None:
        return None
    content_type = view.content_type
    if content_type == "application/graphql":
        try:
            return body.decode("utf-8"), query_name
        except UnicodeDecodeError:
            return None
    if content_type == "application/json" or (content_type or "").endswith("+json"):
        try:
            payload: Any = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return None
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            return None
        return payload["query"], name or None
    return None


def select_operation(view: RequestView) -> tuple[str, str | None] | None:
    """(``query``/``mutation``/``subscription``, name or None) of the selected operation.

    The operation named by ``operationName`` if given (it must exist exactly once),
    else the document's only operation. ``None`` when there is no document, it does
    not parse, or the choice is ambiguous — such a request matches no GraphQL matcher.
    """
    found = _document_and_name(view)
    if found is None:
        return None
    document, wanted = found
    from graphql.error import GraphQLError
    from graphql.language import OperationDefinitionNode, parse

    try:
        parsed = parse(document, no_location=True, max_tokens=MAX_GRAPHQL_TOKENS)
    except (GraphQLError, RecursionError):
        return None
    ops = [d for d in parsed.definitions if isinstance(d, OperationDefinitionNode)]
    if wanted is not None:
        ops = [op for op in ops if op.name is not None and op.name.value == wanted]
    if len(ops) != 1:
        return None
    op = ops[0]
    return op.operation.value, op.name.value if op.name is not None else None
