"""Attribution: candidate actors and countries with calibrated probabilities and their evidence.

The one entry point is :func:`attribute` (see :mod:`.assess`); :mod:`.evaluate` runs the
held-out protocols that measure it.
"""

from varde.analysis.attribution.assess import PARAMS, AttributionInput, attribute

__all__ = ["PARAMS", "AttributionInput", "attribute"]
