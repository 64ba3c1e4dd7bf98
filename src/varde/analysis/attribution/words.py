"""Estimative words for probabilities, and a confidence level kept apart from them.

ICD 203 (US Intelligence Community Directive 203, "Analytic Standards") and the UK Professional
Head of Intelligence Assessment (PHIA) probability yardstick map a probability to words. Confidence
says how good the evidence base is and is never folded into the likelihood (ICD 203 rule): a
probability of 0.9 from three generic techniques is still a low-confidence judgement.
"""

from __future__ import annotations

from typing import Literal

Scale = Literal["icd203", "phia"]

# Upper bounds (exclusive, but the last) and words. ICD 203 ranges: almost no chance 1-5%, very
# unlikely 5-20%, unlikely 20-45%, roughly even chance 45-55%, likely 55-80%, very likely 80-95%,
# almost certain 95-99%.
ICD203: tuple[tuple[float, str], ...] = (
    (0.05, "almost no chance"), (0.20, "very unlikely"), (0.45, "unlikely"),
    (0.55, "roughly even chance"), (0.80, "likely"), (0.95, "very likely"), (1.01, "almost certain"),
)
# PHIA yardstick: remote <=5%, highly unlikely 10-20%, unlikely 25-35%, realistic possibility
# 40-50%, likely 55-75%, highly likely 80-90%, almost certain >=95%. Its gaps go to the nearer
# band (the boundaries below are the gaps' midpoints).
PHIA: tuple[tuple[float, str], ...] = (
    (0.075, "remote chance"), (0.225, "highly unlikely"), (0.375, "unlikely"),
    (0.525, "realistic possibility"), (0.775, "likely"), (0.925, "highly likely"), (1.01, "almost certain"),
)

Confidence = Literal["low", "moderate", "high"]


def likelihood(probability: float, scale: Scale = "icd203") -> str:
    """The estimative words for a probability on the chosen scale."""
    for bound, words in ICD203 if scale == "icd203" else PHIA:
        if probability < bound:
            return words
    return "almost certain"


def confidence(specific: int, features: int, strong: int, probability: float) -> Confidence:
    """Confidence in a candidate from the quality and quantity of what supports it.

    ``specific``: matched features shared by at most three groups; ``features``: observed
    features the index knows; ``strong``: actor-labelled indicator or code matches. High needs
    strong or several specific pieces of evidence and a clear probability; low is the default.
    """
    if probability >= 0.5 and (strong >= 1 or (specific >= 3 and features >= 8)):
        return "high"
    if strong >= 1 or (specific >= 1 and features >= 5):
        return "moderate"
    return "low"
