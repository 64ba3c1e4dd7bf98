"""Evidence readers: one module per format family, chosen by sniffing content.

A new reader is one module here plus one entry in :data:`READERS`; order matters only where two
readers could claim the same file (the first whose ``sniff`` says yes wins).
"""

from __future__ import annotations

from varde.sources.base import Reader
from varde.sources.eventjson import EventJsonReader
from varde.sources.evtx import EvtxReader
from varde.sources.exchange_csv import ExchangeCsvReader
from varde.sources.m365audit import M365AuditReader
from varde.sources.w3c import W3cReader

READERS: tuple[Reader, ...] = (EvtxReader(), M365AuditReader(), EventJsonReader(), ExchangeCsvReader(), W3cReader())


def reader_named(name: str) -> Reader:
    """The reader whose ``name`` is ``name`` (used by worker processes)."""
    for reader in READERS:
        if reader.name == name:
            return reader
    raise KeyError(name)
