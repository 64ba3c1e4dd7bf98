"""varde: compromise assessment for Microsoft Exchange servers.

Evidence copied off mail servers goes in (EVTX, JSON event exports, logs, file trees);
a case folder with an event store, findings and ``report.json`` comes out.
"""

__version__ = "0.1.0"
