"""Built-in Exchange detectors: one module per family of exploitation or post-exploitation.

A new detector is one module here plus one entry in :data:`DETECTORS`. Each runs SQL over the case
store (``detect/exchange/base.py`` says what a detector is); a detector that fails is reported
with its reason and never stops the hunt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import duckdb

from varde.detect.exchange.base import Detector, save_hits
from varde.detect.exchange.mailbox import MailboxActions
from varde.detect.exchange.owassrf import Owassrf
from varde.detect.exchange.proxylogon import ProxyLogon
from varde.detect.exchange.proxyshell import ProxyShell
from varde.detect.exchange.spraying import Spraying
from varde.detect.exchange.webshell import WebShell
from varde.detect.sigma.rules import RuleInfo
from varde.events.store import EventStore

logger = logging.getLogger(__name__)

DETECTORS: tuple[Detector, ...] = (ProxyLogon(), ProxyShell(), Owassrf(), WebShell(), Spraying(), MailboxActions())

#: The ``source`` of the built-in detectors in ``case.rulesets``.
SOURCE = "builtin:varde-exchange"


@dataclass
class DetectorOutcome:
    """What the built-in detectors found and which of them failed (name, reason)."""

    rules: dict[str, RuleInfo] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)


def run_detectors(store: EventStore, detectors: tuple[Detector, ...] = DETECTORS) -> DetectorOutcome:
    """Run every detector, saving its hits in ``detector_matches``."""
    outcome = DetectorOutcome()
    for detector in detectors:
        module = type(detector).__module__
        outcome.rules.update({r.uid: r.info(module) for r in detector.rules})
        try:
            save_hits(store, list(detector.run(store)))
        except (duckdb.Error, ValueError) as exc:
            logger.warning("detector %s failed: %s", detector.name, exc)
            outcome.errors.append((detector.name, str(exc)))
    return outcome
