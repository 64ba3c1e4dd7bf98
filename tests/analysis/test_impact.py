"""Mailbox impact: exports with download size, reads by intruder sources, M365 audit records."""

from __future__ import annotations

from datetime import UTC, datetime

from varde.analysis.impact import _address, account_key, system_account


def test_mailboxes_are_those_the_intruders_touched(case_report):
    boxes = {m.mailbox: m for m in case_report.mailboxes}
    assert sorted(boxes) == ["alice@corp.example", "dave@corp.example"]  # not bob (admin), not carol (no intruder)


def test_export_has_its_file_and_the_downloaded_size_and_the_ews_read(case_report):
    alice = next(m for m in case_report.mailboxes if m.mailbox == "alice@corp.example")
    assert alice.access == ["export", "read"]
    assert alice.bytes == 73400320  # sc-bytes of the .pst download from the web folder
    assert alice.first_seen == datetime(2021, 3, 3, 2, 20, tzinfo=UTC)
    assert alice.intruder == case_report.intruders[0].id
    assert any("New-MailboxExportRequest" in d for d in alice.details)
    assert alice.finding_ids and alice.evidence


def test_m365_mail_items_accessed_from_an_intruder_address_counts_items(case_report):
    dave = next(m for m in case_report.mailboxes if m.mailbox == "dave@corp.example")
    assert (dave.access, dave.items, dave.bytes) == (["read"], 12, 40960)


def test_account_names_and_addresses():
    assert account_key("CORP\\Alice") == account_key("alice@corp.example") == "alice"
    assert system_account("CORP\\EXCH01$") and system_account("HealthMailbox0a1b@corp.example")
    assert not system_account("alice@corp.example")
    assert _address("192.0.2.1:51234") == "192.0.2.1"
    assert _address("[2001:db8::1]:443") == "2001:db8::1"
    assert _address("2001:db8::1") == "2001:db8::1"
