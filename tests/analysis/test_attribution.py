"""Attribution: a tiny hand-made STIX set (self-contained), then the shared ATT&CK data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varde.analysis.attack import AttackIndex, build_index, published
from varde.analysis.attribution import PARAMS, AttributionInput, attribute
from varde.analysis.attribution.calibrate import ece_interval, fit, summary
from varde.analysis.attribution.countries import pooled_scores, shares
from varde.analysis.attribution.evaluate import campaign_cases, loro_cases, run_case
from varde.analysis.attribution.indicators import load_set
from varde.analysis.attribution.model import Basis, Profiles, posterior
from varde.analysis.attribution.words import likelihood
from varde.cli import app

REPO = Path(__file__).resolve().parents[2]
INTEL = Path(os.environ.get("VARDE_SHARED", REPO.parent / "shared")) / "intel"
IDENTITY = "identity--c78cb6e5-0c4b-4611-8297-d1b8b55e40b5"


def _obj(kind: str, uid: str, ext: str, name: str, created: str = "2019-01-01T00:00:00.000Z", **extra) -> dict:
    site = {"intrusion-set": "groups", "campaign": "campaigns", "attack-pattern": "techniques"}.get(kind, "software")
    return {"type": kind, "id": f"{kind}--{uid}", "created": created, "modified": created, "name": name,
            "created_by_ref": IDENTITY,
            "external_references": [{"source_name": "mitre-attack", "external_id": ext,
                                     "url": f"https://attack.mitre.org/{site}/{ext}"}], **extra}


def _rel(n: int, src: str, dst: str, cite: str, created: str = "2019-01-01T00:00:00.000Z",
         kind: str = "uses") -> dict:
    return {"type": "relationship", "id": f"relationship--00000000-0000-4000-8000-{n:012d}", "created": created,
            "modified": created, "relationship_type": kind, "source_ref": src, "target_ref": dst,
            "description": f"Procedure {n}.(Citation: {cite})",
            "external_references": [{"source_name": cite, "description": f"{cite} report."}]}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """Three groups, four techniques, one custom malware, one campaign, written as STIX 2.0 files."""
    u = "00000000-0000-4000-8000-0000000000{:02d}".format
    objs = [
        _obj("intrusion-set", u(1), "G0001", "Alpha", aliases=["Alpha", "ALPHA PANDA"]),
        _obj("intrusion-set", u(2), "G0002", "Beta"),
        _obj("intrusion-set", u(3), "G0003", "Gamma", created="2021-03-03T00:00:00.000Z"),
        _obj("attack-pattern", u(10), "T1190", "Exploit Public-Facing Application"),
        _obj("attack-pattern", u(11), "T1505.003", "Web Shell"),
        _obj("attack-pattern", u(12), "T1078", "Valid Accounts"),
        _obj("attack-pattern", u(13), "T1110", "Brute Force"),
        _obj("malware", u(20), "S0001", "AlphaShell"),
        _obj("campaign", u(30), "C0001", "Operation Alpha"),
    ]
    g1, g2, g3 = (f"intrusion-set--{u(i)}" for i in (1, 2, 3))
    t = {k: f"attack-pattern--{u(i)}" for k, i in (("T1190", 10), ("T1505.003", 11), ("T1078", 12), ("T1110", 13))}
    rels = [
        _rel(1, g1, t["T1190"], "R1"), _rel(2, g1, t["T1505.003"], "R1"), _rel(3, g1, f"malware--{u(20)}", "R1"),
        _rel(4, g1, t["T1190"], "R2"), _rel(5, g2, t["T1078"], "R3"), _rel(6, g2, t["T1110"], "R3"),
        _rel(7, g3, t["T1190"], "R4", created="2021-03-03T00:00:00.000Z"),
        _rel(8, g3, t["T1505.003"], "R4", created="2021-03-03T00:00:00.000Z"),
        _rel(9, f"campaign--{u(30)}", t["T1110"], "R5"),
        _rel(10, f"campaign--{u(30)}", g1, "R5", kind="attributed-to"),
    ]
    folder = tmp_path_factory.mktemp("stix") / "attack"
    folder.mkdir()
    for obj in objs + rels:
        sub = folder / obj["type"]
        sub.mkdir(exist_ok=True)
        (sub / f"{obj['id']}.json").write_text(json.dumps({"type": "bundle", "spec_version": "2.0",
                                                           "id": "bundle--x", "objects": [obj]}))
    misp = folder.parent / "threat-actor.json"
    misp.write_text(json.dumps({"values": [
        {"value": "ALPHA PANDA", "meta": {"country": "CN", "cfr-suspected-victims": ["Norway"]},
         "related": [{"dest-uuid": u(1)}]},
        {"value": "Beta", "meta": {"country": "RU"}}]}))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> AttackIndex:
    return build_index(tiny_dir, [tiny_dir.parent / "threat-actor.json"], attack_version="test")


def test_index_reads_stix_and_misp(tiny: AttackIndex) -> None:
    assert sorted(tiny.actors) == ["C0001", "G0001", "G0002", "G0003"]
    assert tiny.actors["G0001"].country == "CN" and tiny.actors["G0001"].victims == ("Norway",)
    assert tiny.actors["G0002"].country == "RU"  # by its unique name
    assert tiny.actors["C0001"].attributed_to == ("G0001",)
    use = next(x for x in tiny.uses if x.source == "G0001" and x.target == "S0001")
    assert use.citations == ("R1",) and use.text == "Procedure 3."


def test_index_round_trips_and_is_deterministic(tiny: AttackIndex, tmp_path: Path) -> None:
    tiny.save(tmp_path / "a.gz")
    again = AttackIndex.load(tmp_path / "a.gz")
    again.save(tmp_path / "b.gz")
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert again.actors["G0001"].country == "CN"


def test_time_slice_waits_for_the_release(tiny: AttackIndex) -> None:
    assert published("2021-03-03") == "2021-04-29"
    assert "G0003" not in tiny.as_of("2021-03-15").actors
    assert "G0003" in tiny.as_of("2021-03-15", lag=False).actors
    assert "G0003" in tiny.as_of("2021-05-01").actors


def test_custom_malware_and_victim_rank_the_right_group(tiny: AttackIndex) -> None:
    result = attribute(AttributionInput(techniques=["T1190", "T1505.003"], software=["AlphaShell"],
                                        victim_country="NO"), tiny)
    top = result.candidates[0]
    assert top.attack_id == "G0001" and top.country == "CN"
    assert any(e.startswith("S0001 AlphaShell: uses") and "Procedure 3." in e for e in top.evidence_for)
    assert result.countries[0].country == "CN"
    assert abs(sum(c.probability for c in result.candidates) + result.unknown_probability - 1) < 0.02


def test_indicator_hits_weigh_by_scope(tiny: AttackIndex, tmp_path: Path) -> None:
    sets = tmp_path / "set.csv"
    sets.write_text("value,type,actor,scope,source\n203.0.113.7,ipv4-addr,Beta,actor,https://example.org/r\n"
                    "198.51.100.1,ipv4-addr,,wave,https://example.org/w\nbad,,,nonsense,\n")
    indicators = load_set(sets)
    assert len(indicators) == 2
    base = attribute(AttributionInput(techniques=["T1190"]), tiny)
    hit = attribute(AttributionInput(techniques=["T1190"], indicators=["203.0.113.7", "198.51.100.1"]),
                    tiny, indicator_sets=indicators)
    prob = {c.attack_id: c.probability for c in hit.candidates}
    assert prob["G0002"] > {c.attack_id: c.probability for c in base.candidates}.get("G0002", 0)
    assert any("names no actor" in n for n in hit.notes)


def test_held_out_view_equals_an_index_without_the_report(tiny: AttackIndex) -> None:
    """Forgetting a report by subtracting its cells gives the profiles of an index rebuilt
    without that report's citations (a relationship it alone supported disappears)."""
    from dataclasses import replace

    uses = [replace(u, citations=tuple(c for c in u.citations if c != "R1")) for u in tiny.uses]
    without = replace(tiny, uses=[u for u in uses if u.citations or u.source not in tiny.actors])
    params = replace(PARAMS, cosine=1.0)
    held, rebuilt = Profiles(Basis(tiny), params, frozenset({"R1"})), Profiles(without, params)
    assert held.candidates == rebuilt.candidates
    query = ["T1190", "T1505.003", "S0001"]
    assert held.scores(query) == pytest.approx(rebuilt.scores(query))
    assert not held.direct[held.row["G0001"], held.column["S0001"]]
    assert held.direct[held.row["G0001"], held.column["T1190"]]  # R2 still supports it


def test_closest_report_explains_itself_and_is_forgotten(tiny: AttackIndex) -> None:
    """The closest-report view names the report in the evidence, and a held-out view that
    forgets the report no longer sees it (R2, the group's other report, cites one feature only,
    fewer than a report profile needs)."""
    query = ["T1190", "T1505.003", "S0001"]
    result = attribute(AttributionInput(techniques=query[:2], software=query[2:]), tiny)
    alpha = next(c for c in result.candidates if c.attack_id == "G0001")
    assert any(e.startswith("closest report: R1 shares 3 of its 3 features") for e in alpha.evidence_for)
    basis = Basis(tiny)
    full, held = Profiles(basis, PARAMS), Profiles(basis, PARAMS, frozenset({"R1"}))
    assert full.closest("G0001", query).report == "R1"
    assert held.closest("G0001", query) is None
    assert held.views(query)[2][held.row["G0001"]] == 0.0 < full.views(query)[2][full.row["G0001"]]


def test_country_mixture_keeps_the_mass(tiny: AttackIndex) -> None:
    profiles = Profiles(Basis(tiny), PARAMS)
    query = ["T1190", "T1505.003", "S0001"]
    country_of = {"G0001": "CN", "G0002": "RU"}.get
    pooled = pooled_scores(profiles, query, country_of)
    assert max(pooled, key=pooled.get) == "CN"
    probs = {"G0001": 0.5, "G0002": 0.2, "G0003": 0.1}
    assert shares(probs, 0.2, pooled, country_of, 0.0, 4.0) == {"CN": 0.5, "RU": 0.2}
    mixed = shares(probs, 0.2, pooled, country_of, 0.5, 4.0)
    assert sum(mixed.values()) == pytest.approx(0.7) and mixed["CN"] > 0.5


def test_ece_interval_brackets_the_ece() -> None:
    judged = [(0.2 + 0.6 * (i % 7) / 6, i % 3 != 0, 0.5) for i in range(300)]
    low, high = ece_interval(judged)
    assert low <= summary(judged)["ece"] <= high


def test_research_campaign_protocol_keeps_the_reports(tiny: AttackIndex) -> None:
    strict, = campaign_cases(tiny, True)
    research, = campaign_cases(tiny, True, strict=False)
    assert strict.forget == frozenset({"R5"}) and research.forget == frozenset()
    assert strict.removed == research.removed == frozenset({"C0001"})


def test_calibration_fit_recovers_unknown_from_weak_scores() -> None:
    rows = []
    for i in range(60):
        strong = {"G1": 12.0 + i % 5, "G2": 2.0, "G3": 1.0}
        weak = {"G1": 1.0 + (i % 3) * 0.1, "G2": 0.9, "G3": 0.8}
        rows += [("G1", strong, 8), ("", weak, 8)]
    params = fit(rows)
    assert params.temperature >= 1
    probs, unknown = posterior({"G1": 1.0, "G2": 0.9, "G3": 0.8}, params, 8)
    assert unknown > 0.8 > probs["G1"]
    probs, unknown = posterior({"G1": 14.0, "G2": 2.0, "G3": 1.0}, params, 8)
    assert probs["G1"] > 0.8 > unknown


def test_eval_cli_on_tiny_data(tiny_dir: Path) -> None:
    run = CliRunner().invoke(app, ["eval", "attribution", "--from", str(tiny_dir)])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.output)
    assert doc["E2 techniques+software"]["cases"] == 1


def test_code_match_is_strong_evidence(tiny: AttackIndex, tmp_path: Path) -> None:
    path = tmp_path / "idx.json.gz"
    tiny.save(path)
    meta = tmp_path / "yara.json"
    meta.write_text(json.dumps([{"rule": "BetaLoader", "actor": "Beta", "reference": "https://example.org/y"},
                                {"rule": "AlphaShellA", "malware_family": "AlphaShell"}]))
    run = CliRunner().invoke(app, ["attribute", "--index", str(path), "--techniques", "T1078",
                                   "--code-match", str(meta), "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.output)
    beta = next(c for c in doc["candidates"] if c["attack_id"] == "G0002")
    assert any(e.startswith("code match: BetaLoader") for e in beta["evidence_for"])
    assert beta["confidence"] in ("moderate", "high")
    alpha = next(c for c in doc["candidates"] if c["attack_id"] == "G0001")
    assert any(e.startswith("S0001 AlphaShell") for e in alpha["evidence_for"])


def test_cli_intel_update_writes_the_user_index(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VARDE_DATA_DIR", str(tmp_path))
    run = CliRunner().invoke(app, ["intel", "update", "--from", str(tiny_dir)])
    assert run.exit_code == 0, run.output
    from varde.analysis.attack import default_index

    index = default_index()
    assert sorted(index.actors) == ["C0001", "G0001", "G0002", "G0003"]
    assert index.misp  # the MISP part of the index in use is kept


def test_words() -> None:
    assert likelihood(0.9) == "very likely" and likelihood(0.5) == "roughly even chance"
    assert likelihood(0.9, "phia") == "highly likely" and likelihood(0.02, "phia") == "remote chance"


# -- the shared ATT&CK data ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def attack18() -> AttackIndex:
    """ATT&CK 18.1 from ../shared/intel, built once per session."""
    if not (INTEL / "attack" / "intrusion-set").is_dir():
        pytest.skip(f"shared ATT&CK data not found at {INTEL}")
    clusters = INTEL / "misp-galaxy" / "clusters"
    return build_index(INTEL / "attack", [clusters / "threat-actor.json", clusters / "microsoft-activity-group.json"])


PROXYLOGON = ["T1190", "T1505.003", "T1003.001", "T1003.003", "T1560.001", "T1567.002", "T1059.001",
              "T1114.002", "T1136.002", "T1105", "T1071.001", "T1583.003", "T1218.011"]


def test_replay_march_2021_is_china_without_a_confident_group(attack18: AttackIndex) -> None:
    result = attribute(AttributionInput(techniques=PROXYLOGON, software=["S0020", "S0073", "S0029"],
                                        victim_country="NO"), attack18, as_of="2021-03-15")
    assert result.as_of == "2021-03-15"
    assert "G0125" not in {c.attack_id for c in result.candidates}  # HAFNIUM published 2021-04-29
    assert result.countries[0].country == "CN"
    assert all(c.confidence != "high" for c in result.candidates)


def test_replay_2020_brute_force_is_low_confidence(attack18: AttackIndex) -> None:
    result = attribute(AttributionInput(techniques=["T1110", "T1110.003", "T1078", "T1114.002"],
                                        victim_country="NO"), attack18, as_of="2020-12-08")
    assert all(c.confidence == "low" for c in result.candidates)
    assert result.candidates[0].probability < 0.5


def test_generic_techniques_abstain(attack18: AttackIndex) -> None:
    result = attribute(AttributionInput(techniques=["T1078", "T1110"]), attack18)
    assert all(c.probability < 0.2 for c in result.candidates)
    assert result.unknown_probability >= 0.2


def test_held_out_cases_forget_their_report(attack18: AttackIndex) -> None:
    """A sample of E1 cases: the held-out report's own relationships are gone from the index."""
    basis = Basis(attack18)
    cases = list(loro_cases(attack18, True, basis.reports))
    assert len(cases) > 400
    case = next(c for c in cases if any(basis.reports[(c.truth, f)] == c.forget for f in c.features))
    only = next(f for f in case.features if basis.reports[(case.truth, f)] == case.forget)
    full, held = Profiles(basis, PARAMS), Profiles(basis, PARAMS, case.forget)
    assert full.direct[full.row[case.truth], full.column[only]]
    assert not held.direct[held.row[case.truth], held.column[only]]
    outcomes = [run_case(basis, c, PARAMS) for c in cases[::40]]
    assert sum(1 for o in outcomes if o.rank == 1) >= len(outcomes) // 4
    assert len(list(campaign_cases(attack18, True))) >= 20


def test_bundled_index_has_notice_and_version() -> None:
    from varde.analysis.attack import default_index

    index = default_index()
    assert index.attack_version == "18.1" and "The MITRE Corporation" in index.notice


def test_cli_attribute_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VARDE_DATA_DIR", str(tmp_path))
    run = CliRunner().invoke(app, ["attribute", "--techniques", "T1190,T1505.003", "--software", "S0020",
                                   "--as-of", "2021-03-15", "--json"])
    assert run.exit_code == 0, run.output
    doc = json.loads(run.output)
    assert set(doc) >= {"candidates", "countries", "unknown_probability"}
    assert doc["as_of"] == "2021-03-15"


def test_cli_intel_build(tiny_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx.json.gz"
    run = CliRunner().invoke(app, ["intel", "build", "--from", str(tiny_dir), "--out", str(out),
                                   "--misp", str(tiny_dir.parent / "threat-actor.json")])
    assert run.exit_code == 0, run.output
    index = AttackIndex.load(out)
    assert len(index.groups()) == 3 and index.actors["G0001"].country == "CN"
