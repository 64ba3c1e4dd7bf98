"""Shared test fixtures.

``shared`` is the ``../shared`` folder beside the repository (the corpus, intel and docs); tests
that need it use the ``shared`` or ``corpus`` fixtures and are skipped with a reason when it is
absent, so a fresh clone still passes its self-contained suite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VARDE_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; skips the test when it is absent."""
    if not (SHARED / "corpus" / "manifest.json").is_file():
        pytest.skip(f"shared corpus not found at {SHARED} (set VARDE_SHARED to its path)")
    return SHARED


@pytest.fixture(scope="session")
def corpus(shared: Path) -> Path:
    """../shared/corpus."""
    return shared / "corpus"


@pytest.fixture(scope="session")
def manifest(corpus: Path) -> list[dict]:
    """The corpus manifest's entries."""
    return json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))["entries"]
