"""The case folder: where a hunt keeps its store, its results and its scratch space.

```
CASE/
  events.duckdb    the case store (events, evidence, read warnings, rule matches)
  report.json      the result document (shared/spec/report-contract.md)
  tmp/             DuckDB spill files and archive members being read; emptied after a run
```

Evidence is never written: a case folder inside an evidence folder (or the reverse) is refused.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from varde.errors import CaseError, UsageError


@dataclass(frozen=True)
class Case:
    """Paths of one case folder."""

    root: Path

    @property
    def store_path(self) -> Path:
        return self.root / "events.duckdb"

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    @property
    def scratch(self) -> Path:
        return self.root / "tmp"

    @classmethod
    def create(cls, root: Path, evidence: Iterable[Path]) -> Case:
        """Make (or reuse) the folder ``root``, refusing one that overlaps the evidence."""
        root = root.resolve()
        for path in evidence:
            resolved = path.resolve()
            if root == resolved or resolved in root.parents or root in resolved.parents:
                raise UsageError(f"the case folder {root} overlaps the evidence {path}: evidence is never written")
        if root.exists() and not root.is_dir():
            raise CaseError(f"the case folder {root} exists and is not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            (root / "tmp").mkdir(exist_ok=True)
        except OSError as exc:
            raise CaseError(f"cannot create the case folder {root}: {exc.strerror or exc}") from exc
        return cls(root)

    @classmethod
    def open(cls, root: Path) -> Case:
        """An existing case folder (for re-rendering its report)."""
        case = cls(root.resolve())
        if not case.report_path.is_file():
            raise CaseError(f"{root} is not a case folder: it has no report.json")
        return case

    def clean_scratch(self) -> None:
        """Remove what a run left in the scratch folder."""
        shutil.rmtree(self.scratch, ignore_errors=True)
