"""MSExchange Management cmdlet events: positional ``Data`` values get names, the joined ``Data``
text stays (SigmaHQ's msexchange-management keyword rules search it)."""

from __future__ import annotations

import json
from pathlib import Path

from builders import read

from varde.sources.winevent import from_flat, from_winlogbeat

VALUES = [
    "New-MailboxExportRequest", '-Mailbox "ceo" -FilePath "\\\\EXCH01\\c$\\inetpub\\wwwroot\\aspnet_client\\s.aspx"',
    "corp.example/Users/admin", "S-1-5-21-1-2-3-500", "S-1-5-21-1-2-3-500", "Remote-ManagementShell-Unknown",
    "5668 w3wp#MSExchangePowerShellAppPool", "", "5", "00:00:01.0389557",
]


def cmdlet_event() -> dict:
    """A cmdlet event in the ``evtx`` crate's layout, positions as in the research notes."""
    return {"Event": {
        "System": {"Provider": {"#attributes": {"Name": "MSExchange CmdletLogs"}},
                   "EventID": {"#attributes": {"Qualifiers": "16384"}, "#text": "1"}, "Channel": "MSExchange Management",
                   "Computer": "EXCH01.corp.example", "EventRecordID": "3229",
                   "TimeCreated": {"#attributes": {"SystemTime": "2021-03-03T07:10:00.000000Z"}}},
        "EventData": {"Data": {"#text": VALUES}}}}


def test_positional_values_are_named_and_the_text_kept(tmp_path: Path) -> None:
    path = tmp_path / "mgmt.jsonl"
    path.write_text(json.dumps(cmdlet_event()) + "\n")
    [event] = read(tmp_path, path).events
    fields = event["fields"]
    assert (event["channel"], event["provider"], event["event_id"]) == ("MSExchange Management",
                                                                        "MSExchange CmdletLogs", 1)
    assert fields["Cmdlet"] == "New-MailboxExportRequest" and fields["Parameters"] == VALUES[1]
    assert fields["Caller"] == "corp.example/Users/admin"
    assert fields["ClientApplication"] == "Remote-ManagementShell-Unknown"
    assert fields["Process"] == "5668 w3wp#MSExchangePowerShellAppPool" and fields["Duration"] == VALUES[9]
    assert fields["Data"] == " ".join(VALUES)


def test_winlogbeat_params_and_flattened_messages() -> None:
    beat = from_winlogbeat({"@timestamp": "2021-03-03T07:10:00Z", "winlog": {
        "channel": "MSExchange Management", "provider_name": "MSExchange CmdletLogs", "event_id": 1,
        "event_data": {f"param{n + 1}": v for n, v in enumerate(VALUES)}}})
    assert beat.fields["Cmdlet"] == VALUES[0] and beat.fields["Process"] == VALUES[6]
    # OTRF / NXLog exports keep only the rendered (English) message
    flat = from_flat({"SourceName": "MSExchange CmdletLogs", "Channel": "MSExchange Management", "EventID": 1,
                      "Message": 'Cmdlet suceeded. Cmdlet Set-OabVirtualDirectory, parameters -ExternalUrl '
                                 '"http://f/#<script>x</script>" -Identity "OAB (Default Web Site)".'})
    assert flat.fields["Cmdlet"] == "Set-OabVirtualDirectory"
    assert flat.fields["Parameters"] == '-ExternalUrl "http://f/#<script>x</script>" -Identity "OAB (Default Web Site)"'


def test_real_cmdlet_evtx(corpus: Path, tmp_path: Path) -> None:
    result = read(tmp_path, corpus / "evtx-samples/evtx-crate-samples/MSExchange_Management_wec.evtx")
    cmdlets = [e for e in result.events if e["provider"] == "MSExchange CmdletLogs"]
    assert cmdlets and all(e["fields"].get("Cmdlet") for e in cmdlets)
    first = next(e for e in cmdlets if e["fields"]["Cmdlet"] == "Set-Mailbox")
    assert first["fields"]["Caller"] == "ave.local/Users/Administrateur"
    assert first["fields"]["Data"].startswith("Set-Mailbox -Identity")
