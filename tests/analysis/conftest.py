"""The intrusion case of ``intrusion_case.py``, built once per session (detection takes seconds)."""

from __future__ import annotations

import pytest
from intrusion_case import build

from varde.report.document import Report


@pytest.fixture(scope="session")
def case_report(tmp_path_factory) -> Report:
    return build(tmp_path_factory.mktemp("intrusion-case"))
