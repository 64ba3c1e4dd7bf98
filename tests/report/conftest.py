"""The report tests use the intrusion case of tests/analysis (rows in documented log layouts)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from intrusion_case import build

from varde.report.document import Report


@pytest.fixture(scope="session")
def golden_report(tmp_path_factory) -> Report:
    return build(tmp_path_factory.mktemp("golden-case"))
