"""Exchange cmdlet invocations from every log that records them, in one shape.

The MSExchange Management event log (event 1 succeeded, 6 failed: positional ``Data``, or a
rendered ``Message`` in exports), the ECP server and activity logs (``S:CMD=Cmdlet.Param='value'``)
and the remote PowerShell cmdlet logs (``Rps_Cmdlet``) all record the Exchange cmdlets that ran.
Their layouts differ, so this module reads the cmdlet and the parameters the detectors need from
the event's whole text: ``cmdlet``, ``mailbox`` (``-Mailbox``, else ``-Identity``), ``path``
(``-FilePath``), and the calling user where the log has a column for it.
"""

from __future__ import annotations

from varde.events.store import EventStore

#: Channels that log cmdlets (channel names: docs/schema.md).
CHANNELS = ("MSExchange Management", "Exchange ECP Server", "Exchange ECP Activity", "Exchange Rps Cmdlet")

_VERBS = ("Add|Clear|Disable|Enable|Export|Get|Import|Install|Invoke|New|Remove|Reset|Restart|Resume|Search|Set|"
          "Start|Stop|Suspend|Test|Update")


def parameter(name: str) -> str:
    """SQL: the value of cmdlet parameter ``name`` in the event text ``"*"`` (``-Name "v"``,
    ``-Name v``, or the ECP form ``.Name='v'``), NULL when absent."""
    pattern = rf"""(?i)[-.]{name}[\s=:]+["']?([^"';\r\n]+?)["']?(\s+-\w|["';]|\.\w+=|$)"""
    return f"nullif(trim(regexp_extract(\"*\", '{_sql(pattern)}', 1)), '')"


def command_text(store: EventStore) -> str | None:
    """The table of every cmdlet invocation in the case (made once per state of the store), or None."""
    parts = []
    for channel in CHANNELS:
        source = store.select(channel, ("*", "AuthenticatedUser", "Caller", "UserId"))
        if source is None:
            continue
        cmdlet = f"nullif(regexp_extract(\"*\", '\\b(({_VERBS})-[A-Za-z]+)\\b', 1), '')"
        parts.append(f"""SELECT key, ts, host, channel, event_id, "*" AS text, {cmdlet} AS cmdlet,
            coalesce({parameter('Mailbox')}, {parameter('Identity')}) AS mailbox, {parameter('FilePath')} AS path,
            nullif(coalesce(AuthenticatedUser, Caller, UserId), '') AS "user" FROM {source}""")
    if not parts:
        return None
    return store.materialise("cmdlet_invocations", " UNION ALL ".join(parts))


def _sql(text: str) -> str:
    return text.replace("'", "''")
