"""Reading YAML while remembering where each value came from.

PyYAML's safe loader builds plain dicts and lists; this loader also records the
line and column of every mapping value and list item, keyed by the identity of
the container, so validation errors can point at the exact spot. Duplicate keys,
which PyYAML silently collapses, are errors here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

Position = tuple[int, int]  # 1-based line, column


@dataclass
class Located:
    """A parsed document plus the positions of its values."""

    data: Any
    source: str
    # id(container) -> {key or index: position of that child's value}
    positions: dict[int, dict[Any, Position]] = field(default_factory=dict)
    root: Position | None = None


class _LocatingLoader(yaml.SafeLoader):
    positions: dict[int, dict[Any, Position]]


def _pos(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _construct_map(loader: _LocatingLoader, node: MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    has_merge = any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value)
    loader.flatten_mapping(node)
    where: dict[Any, Position] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in data and not has_merge:
            raise ConstructorError(
                None, None, f"duplicate key {key!r} in a mapping", key_node.start_mark
            )
        data[key] = loader.construct_object(value_node, deep=True)
        where[key] = _pos(value_node)
    loader.positions[id(data)] = where


def _construct_seq(loader: _LocatingLoader, node: SequenceNode) -> Iterator[list[Any]]:
    data: list[Any] = []
    yield data
    where: dict[Any, Position] = {}
    for index, child in enumerate(node.value):
        data.append(loader.construct_object(child, deep=True))
        where[index] = _pos(child)
    loader.positions[id(data)] = where


_LocatingLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LocatingLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


class YamlSyntaxError(ValueError):
    """The text is not valid YAML (or has duplicate keys). Carries a position."""

    def __init__(self, message: str, position: Position | None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


def parse_yaml(text: str, source: str) -> Located:
    """Parse one YAML document with the safe loader, recording value positions."""
    try:
        loader = _LocatingLoader(text)  # the reader checks every character up front
    except yaml.reader.ReaderError as exc:
        char = exc.character
        what = f"#x{char:04x}" if isinstance(char, int) else repr(char)
        raise YamlSyntaxError(
            f"invalid YAML: unacceptable character {what}: {exc.reason}",
            _offset_position(text, exc.position),
        ) from None
    loader.positions = {}
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        root = _pos(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = (mark.line + 1, mark.column + 1) if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlSyntaxError(f"invalid YAML: {problem}", pos) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", None) from None
    except RecursionError:  # PyYAML composes and constructs nested nodes recursively
        raise YamlSyntaxError("invalid YAML: collections nested too deeply", None) from None
    finally:
        loader.dispose()
    return Located(data=data, source=source, positions=loader.positions, root=root)


def _offset_position(text: str, offset: int) -> Position:
    line_start = text.rfind("\n", 0, offset) + 1
    return (text.count("\n", 0, offset) + 1, offset - line_start + 1)
