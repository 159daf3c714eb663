"""docs/embedding.md cannot rot: every ``python`` block in it runs here.

The rule the doc states at its top: the blocks of one ``## `` section share one
namespace and run in order, from the repository root; each section starts empty. The
snippets carry their own ``assert``s, so running them checks what the doc claims.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "embedding.md"

_FENCE = re.compile(r"^```(\w*)\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the block's first code line in the doc
    code: str


@dataclass
class Section:
    title: str
    blocks: list[Block]


def _sections(text: str) -> list[Section]:
    """``## `` sections in order, each with its ``python`` blocks (fences of three
    backticks; other languages are prose)."""
    sections = [Section("(preamble)", [])]
    language: str | None = None  # inside a fence: its language
    start = 0
    code: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(line)
        if language is None:
            if fence:
                language, start, code = fence.group(1), number + 1, []
            elif line.startswith("## "):
                sections.append(Section(line[3:].strip(), []))
        elif fence and not fence.group(1):
            if language == "python":
                sections[-1].blocks.append(Block(start, "\n".join(code) + "\n"))
            language = None
        else:
            code.append(line)
    assert language is None, "docs/embedding.md has an unclosed code fence"
    return [section for section in sections if section.blocks]


SECTIONS = _sections(DOC.read_text(encoding="utf-8"))


def test_the_doc_walks_through_every_layer() -> None:
    titles = [section.title for section in SECTIONS]
    assert [title.split(".")[0] for title in titles] == ["1", "2", "3", "4", "5", "6"], titles
    assert sum(len(section.blocks) for section in SECTIONS) >= 12


@pytest.mark.parametrize("section", SECTIONS, ids=[s.title.split(".")[0] for s in SECTIONS])
def test_section_snippets_run(section: Section, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": "embedding_doc"}
    for block in section.blocks:
        assert "assert" in block.code or "def " in block.code or "class " in block.code, (
            f"docs/embedding.md:{block.line}: a snippet should check its result"
        )
        # Pad so tracebacks point at the doc's own line numbers.
        source = "\n" * (block.line - 1) + block.code
        exec(compile(source, str(DOC), "exec"), namespace)


def test_snippets_pass_mypy_strict(tmp_path: Path) -> None:
    """What a reader copies into a typed codebase type-checks as it is."""
    pytest.importorskip("mypy")
    files = []
    for section in SECTIONS:
        # One file per section, padded so mypy's line numbers are the doc's.
        parts, line = [], 1
        for block in section.blocks:
            parts += ["\n" * (block.line - line), block.code]
            line = block.line + block.code.count("\n")
        path = tmp_path / f"section_{section.title.split('.')[0]}.py"
        path.write_text("".join(parts), encoding="utf-8")
        files.append(str(path))
    config = str(ROOT / "pyproject.toml")
    cache = str(tmp_path / ".mypy_cache")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            config,
            "--cache-dir",
            cache,
            *files,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, (
        "mypy --strict on docs/embedding.md (section_N.py:LINE is the doc's line):\n"
        + result.stdout
        + result.stderr
    )


def test_the_doc_links_the_complete_examples() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "(../examples/selectors_server.py)" in text
    assert (ROOT / "examples" / "selectors_server.py").is_file()
    assert "(asgi.md)" in text
    assert "(configuration.md)" in text and (ROOT / "docs" / "configuration.md").is_file()


def test_the_readme_points_here() -> None:
    assert "docs/embedding.md" in (ROOT / "README.md").read_text(encoding="utf-8")
