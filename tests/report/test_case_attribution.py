"""The hunt's attribution section: built from the intruders' techniques with the bundled index."""

from __future__ import annotations

from datetime import date

from varde.report.build import case_attribution


def test_nothing_to_attribute_without_intruders() -> None:
    attribution = case_attribution([], "NO", None)
    assert attribution.candidates == [] and attribution.unknown_probability == 1.0 and attribution.notes


def test_exchange_wave_techniques_as_known_in_march_2021() -> None:
    attribution = case_attribution(["T1190", "T1505.003", "T1114.002", "T1003.001"], "NO", date(2021, 3, 15))
    assert attribution.as_of == "2021-03-15"
    probabilities = [c.probability for c in attribution.candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    assert "HAFNIUM" not in {c.name for c in attribution.candidates}  # published in ATT&CK only on 2021-04-29
    assert attribution.candidates[0].evidence_for  # each statement points to the features behind it
    assert 0 < attribution.unknown_probability < 1
