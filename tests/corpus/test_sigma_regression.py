"""SigmaHQ's own regression cases, run the way upstream runs them, through varde.

Every active ``sigma_regression`` case of the corpus manifest: the **entire** SigmaHQ rule set
(all ``rules*`` folders) is run over the case's EVTX, and the case's rule must fire at least
``expected_matches`` times on that file's events. The same cases run again from the ``.json``
twins (the ``evtx`` crate's rendering of the same records) and must give the same result.

Remaining misses are listed, each with its reason, in ``sigma_regression_misses.yml``; the test
fails if a miss is not listed, or if a listed case passes (so the list stays true).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from varde.detect.sigma.rules import RuleSet, load_ruleset
from varde.pipeline import HuntOptions, hunt

MISSES_FILE = Path(__file__).with_name("sigma_regression_misses.yml")
RULE_FOLDERS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-placeholder", "rules-compliance")


@pytest.fixture(scope="module")
def sigma_rulesets(corpus: Path) -> list[RuleSet]:
    return [load_ruleset(corpus / "sigma" / name) for name in RULE_FOLDERS]  # no cache: the real load


@pytest.fixture(scope="module")
def cases(manifest: list[dict]) -> list[dict]:
    return [e for e in manifest if e["kind"] == "sigma_regression" and e.get("active", True)]


def _match_counts(case_dir: Path) -> dict[tuple[str, str], int]:
    """(evidence path, rule id) -> distinct matched events, from the case store."""
    con = duckdb.connect(str(case_dir / "events.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT v.path, m.rule_uid, count(DISTINCT m.key) FROM sigma_matches m "
            "JOIN events e USING (key) JOIN evidence v ON v.id = e.evidence GROUP BY 1, 2"
        ).fetchall()
    finally:
        con.close()
    return {(path, rule): n for path, rule, n in rows}


def _run(corpus: Path, cases: list[dict], key: str, rulesets: list[RuleSet], tmp: Path) -> dict[str, int]:
    files = [corpus / c[key] for c in cases]
    result = hunt(files, tmp / key, HuntOptions(builtin_rules=False, workers=2), rulesets=rulesets)
    assert result.ingest.skipped == 0
    counts = _match_counts(tmp / key)
    return {c["rule"]: counts.get((str(corpus / c[key]), c["rule_id"]), 0) for c in cases}


def _check(cases: list[dict], found: dict[str, int]) -> None:
    listed = {m["rule"]: m["reason"] for m in (yaml.safe_load(MISSES_FILE.read_text()) or {}).get("misses", [])}
    misses = {c["rule"] for c in cases if found[c["rule"]] < c["expected_matches"]}
    unlisted = sorted(misses - set(listed))
    fixed = sorted(set(listed) - misses)
    assert not unlisted, f"regression misses not listed in {MISSES_FILE.name}: {unlisted}"
    assert not fixed, f"listed in {MISSES_FILE.name} but now passing (remove them): {fixed}"
    assert (len(cases) - len(misses)) / len(cases) >= 0.98


@pytest.fixture(scope="module")
def from_evtx(corpus: Path, cases: list[dict], sigma_rulesets: list[RuleSet], tmp_path_factory) -> dict[str, int]:
    return _run(corpus, cases, "evtx", sigma_rulesets, tmp_path_factory.mktemp("regression"))


def test_sigma_regression_evtx(cases: list[dict], from_evtx: dict[str, int]) -> None:
    assert len(cases) == 202
    _check(cases, from_evtx)


def test_sigma_regression_json_twins_agree(
    corpus: Path, cases: list[dict], sigma_rulesets: list[RuleSet], from_evtx: dict[str, int], tmp_path: Path
) -> None:
    from_json = _run(corpus, cases, "event_json", sigma_rulesets, tmp_path)
    assert from_json == from_evtx
    _check(cases, from_json)


def test_whole_sigmahq_tree_loads_and_compiles(sigma_rulesets: list[RuleSet]) -> None:
    """Every SigmaHQ rule loads and compiles; placeholder rules are skipped with their reason."""
    errors = [p for rs in sigma_rulesets for p in rs.errors]
    assert not errors, errors[:5]
    placeholder = next(rs for rs in sigma_rulesets if rs.source.endswith("rules-placeholder"))
    assert placeholder.skipped and all("placeholder" in p.reason for p in placeholder.skipped)
    windows = [r for rs in sigma_rulesets for r in rs.rules if "/windows/" in r.info.path]
    assert len(windows) > 2400
