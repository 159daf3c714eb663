"""Config errors that say where: file, line and column, and a key path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config: where it is and what was expected.

    ``path`` is a key path such as ``routes[3].match.headers[0].exact_match``
    (empty for the document itself); ``line`` and ``column`` are 1-based and
    ``None`` when the config did not come from YAML text.
    """

    source: str
    path: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """The config is invalid. ``issues`` lists every problem found, in document order."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(
            issues, key=lambda i: (i.line if i.line is not None else 1 << 30, i.column or 0)
        )
        super().__init__("\n".join(str(i) for i in self.issues))
