"""One exception tree for varde.

Library code raises these; only :mod:`varde.cli` turns them into exit codes and one-line
messages. Errors that come from evidence or rules carry the place they come from.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceRef:
    """Where something came from: an evidence path or rule file, and a place inside it."""

    path: str
    locator: str | None = None

    def __str__(self) -> str:
        return f"{self.path} ({self.locator})" if self.locator else self.path


class VardeError(Exception):
    """Base of every error varde raises on purpose."""

    exit_code = 1


class UsageError(VardeError):
    """The arguments cannot be used (missing path, bad option value)."""

    exit_code = 2


class CaseError(VardeError):
    """The case folder cannot be created, opened or written."""

    exit_code = 3


class EvidenceError(VardeError):
    """A piece of evidence cannot be read at all."""

    def __init__(self, message: str, source: SourceRef | None = None) -> None:
        super().__init__(f"{source}: {message}" if source else message)
        self.source = source


class RuleError(VardeError):
    """A detection rule cannot be loaded or compiled."""

    def __init__(self, message: str, source: SourceRef | None = None) -> None:
        super().__init__(message)
        self.source = source
