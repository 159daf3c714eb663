"""Path normalization: the security cases, RFC 3986 §5.2.4, and idempotence."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gwcore.config import model as m
from gwcore.policy.paths import PathError, normalize_target, remove_dot_segments

ALL = m.PathNormalization()
CONFIGS = [m.PathNormalization(*flags) for flags in itertools.product([False, True], repeat=3)]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/../public", "/public"),
        ("//admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/%2E%2E/admin", "/admin"),
        ("/public/%2e%2E/%2e/admin", "/admin"),
        ("/a/%2F/..", "/a/"),  # %2F is data, not a separator: ".." removes the segment
        ("/a/%2f/b", "/a/%2F/b"),  # kept encoded, hex upper-cased
        ("/../../etc/passwd", "/etc/passwd"),  # never above "/"
        ("/a/./b//c?x=1", "/a/b/c?x=1"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/a/...", "/a/..."),  # three dots is an ordinary segment
        ("/.hidden/..x", "/.hidden/..x"),
        ("/%7Euser/%41%62%2d%5F%2e", "/~user/Ab-_."),
        ("/q%3fx%23y%25z%20", "/q%3Fx%23y%25z%20"),  # reserved and others stay encoded
        ("/caf\u00e9/%c3%a9", "/caf\u00e9/%C3%A9"),
        ("/a?b=/../c&d=%2e%2e//", "/a?b=/../c&d=%2e%2e//"),  # the query is untouched
        ("/a/../b?", "/b?"),
        ("/", "/"),
    ],
)
def test_normalization_cases(target: str, expected: str) -> None:
    assert normalize_target(target, ALL) == expected


@pytest.mark.parametrize("target", ["*", "http://example.com/a/../b", "example.com:443", ""])
def test_non_origin_form_targets_are_unchanged(target: str) -> None:
    assert normalize_target(target, ALL) == target


@pytest.mark.parametrize("target", ["/a%zz", "/a%4", "/a%", "/%g0/b", "/x/%2"])
def test_invalid_percent_escape_is_a_path_error(target: str) -> None:
    with pytest.raises(PathError, match="invalid percent escape"):
        normalize_target(target, ALL)


def test_invalid_escape_in_query_is_not_checked() -> None:
    assert normalize_target("/a?q=%zz", ALL) == "/a?q=%zz"


def test_each_step_can_be_turned_off() -> None:
    target = "/a//%2e%2e/./b"
    assert normalize_target(target, m.PathNormalization(True, False, False)) == "/a//.././b"
    assert normalize_target(target, m.PathNormalization(False, True, False)) == "/a/%2e%2e/./b"
    assert normalize_target(target, m.PathNormalization(False, False, True)) == "/a//%2e%2e/b"
    assert normalize_target(target, m.PathNormalization(False, False, False)) == target
    # Without merging, ".." removes the empty segment between the slashes (RFC 3986).
    assert normalize_target("/a//../b", m.PathNormalization(True, False, True)) == "/a/b"


def test_unchanged_target_is_the_same_object() -> None:
    target = "/api/v1/users/42?page=2"
    assert normalize_target(target, ALL) is target


def _rfc_remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, step by step, as the oracle."""
    inp, out = path, ""
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./") or inp.startswith("/./"):
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp == "/..":
            inp = "/"
            out = out[: out.rfind("/")] if "/" in out else ""
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            end = inp.find("/", start)
            end = len(inp) if end < 0 else end
            out += inp[:end]
            inp = inp[end:]
    return out


_segments = st.lists(
    st.sampled_from(["", ".", "..", "a", "b", "...", ".a", "%2e", "%2E%2e", "%2F"])
)
_paths = st.builds(lambda segs: "/" + "/".join(segs), _segments)
_raw = st.lists(
    st.sampled_from([*"/.%2eEfF4aA?~-_ \u00e9", "%2e", "%2F", "%41", "%7e", "%25"]), max_size=24
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_paths)
def test_remove_dot_segments_agrees_with_rfc_3986(path: str) -> None:
    assert remove_dot_segments(path) == _rfc_remove_dot_segments(path)


@settings(max_examples=500, deadline=None)
@given(target=st.one_of(_paths, _raw.map(lambda t: "/" + t)), config=st.sampled_from(CONFIGS))
def test_normalization_is_idempotent(target: str, config: m.PathNormalization) -> None:
    try:
        once = normalize_target(target, config)
    except PathError:
        return
    assert normalize_target(once, config) == once


@settings(max_examples=500, deadline=None)
@given(target=st.one_of(_paths, _raw.map(lambda t: "/" + t)))
def test_fully_normalized_paths_have_no_dot_segments_or_empty_segments(target: str) -> None:
    try:
        result = normalize_target(target, ALL)
    except PathError:
        return
    path, _, query = result.partition("?")
    assert query == target.partition("?")[2]
    assert path.startswith("/")
    segments = path[1:].split("/")
    assert not any(s in (".", "..") for s in segments)
    assert "" not in segments[:-1]
    # Escapes that remain are of characters that are not unreserved, in upper case.
    for index in range(len(path)):
        if path[index] == "%":
            digits = path[index + 1 : index + 3]
            assert digits == digits.upper()
            assert (
                chr(int(digits, 16))
                not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
            )
