"""The IIS W3C reader: headers (also changing mid-file or missing), derived fields, damaged lines,
files read in parts, and the corpus logs.

Fixtures are written from the documented format (research notes, exchange-log-formats.md "IIS",
detection-anchors.md §5.2): Exchange's default field set, ``+`` for spaces in user agents,
``&CorrelationID=<empty>;&cafeReqId=...;`` appended to the query on the front end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import read
from builders import write_file as write

import varde.ingest
from varde.sources import linelog
from varde.sources.w3c import DEFAULT_FIELDS, W3cReader

FIELDS = " ".join(DEFAULT_FIELDS)
HEADER = (
    "#Software: Microsoft Internet Information Services 10.0\r\n#Version: 1.0\r\n"
    "#Date: 2021-03-03 00:00:01\r\n#Fields: " + FIELDS + "\r\n"
)
Y_JS = ("2021-03-03 06:49:42 10.0.0.5 POST /ecp/y.js &CorrelationID=<empty>;&cafeReqId=5e58f5e5-1ddc-48d3-82c6-"
        "0199bc121640;&encoding=; 443 - 203.0.113.7 ExchangeServicesClient/0.0.0.0 - 200 0 0 211")
SHELL = ("2021-03-03 06:52:10 10.0.0.5 GET /owa/auth/RedirSuiteServerProxy.aspx &CorrelationID=<empty>;&cafeReqId="
         "9a0c1b2d-0000-4000-8000-000000000001;&encoding=; 443 - 203.0.113.7 "
         "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) - 200 0 0 15")
OWA = ("2021-03-03 07:00:00 10.0.0.5 GET /owa/ &ClientId=ABC&CorrelationID=<empty>;&cafeReqId=1;&encoding=; 443 "
       "CORP\\alice 198.51.100.20 Mozilla/5.0+(Windows+NT+10.0) https://mail.example.org/owa/ 200 0 0 31")


def test_front_end_log_is_read_by_its_header(tmp_path: Path) -> None:
    path = write(tmp_path, "inetpub/logs/LogFiles/W3SVC1/u_ex210303.log", HEADER + Y_JS + "\r\n" + SHELL + "\r\n")
    result = read(tmp_path, path)
    assert result.only()["reader"] == "iis-w3c" and result.only()["records"] == 2
    assert result.warnings == []
    first, second = result.events
    assert (first["channel"], first["provider"], first["event_id"], first["host"]) == ("IIS", "W3SVC1", None, None)
    assert first["locator"] == "line 5" and str(first["ts"]) == "2021-03-03 06:49:42"
    fields = first["fields"]
    assert fields["cs-uri-stem"] == "/ecp/y.js" and fields["cs(User-Agent)"] == "ExchangeServicesClient/0.0.0.0"
    assert fields["cs-uri-query"].startswith("&CorrelationID=<empty>;&cafeReqId=5e58f5e5")  # as logged
    assert fields["cs-uri"] == "/ecp/y.js?" + fields["cs-uri-query"]
    assert fields["sc-status"] == "200" and fields["cs-username"] == "-"
    assert second["fields"]["cs(User-Agent)"] == "Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64)"
    assert second["fields"]["cs-user-agent-decoded"] == "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"


def test_empty_query_gives_the_stem_as_uri_and_encoded_uris_are_decoded(tmp_path: Path) -> None:
    lines = [
        "2021-03-03 08:00:00 10.0.0.5 GET /owa/auth/logon.aspx - 443 - 198.51.100.7 curl/7.68.0 - 200 0 0 3",
        # ProxyNotShell-style encoding (and double encoding) of "autodiscover.json?@x/PowerShell"
        ("2021-03-03 08:00:01 10.0.0.5 GET /autodiscover/autodiscover.json @x.com/%50owershell/&Email=a%252540x 443 "
        "- 198.51.100.7 python-requests/2.28.1 - 200 0 0 3"),
    ]
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", HEADER + "\n".join(lines) + "\n"))
    plain, encoded = (e["fields"] for e in result.events)
    assert plain["cs-uri"] == plain["cs-uri-decoded"] == "/owa/auth/logon.aspx"
    assert encoded["cs-uri"] == "/autodiscover/autodiscover.json?@x.com/%50owershell/&Email=a%252540x"
    assert encoded["cs-uri-decoded"] == "/autodiscover/autodiscover.json?@x.com/Powershell/&Email=a@x"


def test_a_new_header_mid_file_changes_the_columns_from_there_on(tmp_path: Path) -> None:
    wider = FIELDS.replace("sc-status", "sc-status sc-bytes cs-bytes").replace("time-taken", "time-taken s-sitename")
    second = ("2021-03-03 09:00:00 10.0.0.5 GET /ecp/ - 443 - 203.0.113.9 x - 302 4100 120 0 0 9 W3SVC1")
    text = HEADER + Y_JS + "\n" + "#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n" \
        "#Date: 2021-03-03 09:00:00\n#Fields: " + wider + "\n" + second + "\n"
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    assert result.warnings == []
    before, after = result.events
    assert before["fields"].get("sc-bytes") is None and before["fields"]["sc-status"] == "200"
    assert after["locator"] == "line 10"
    assert (after["fields"]["sc-status"], after["fields"]["sc-bytes"], after["fields"]["time-taken"]) == ("302", "4100", "9")
    assert after["provider"] == "W3SVC1"  # from s-sitename, the path shows no site folder


def test_excerpt_without_header_uses_the_default_field_order_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "excerpt.txt", Y_JS + "\n" + OWA + "\n")
    result = read(tmp_path, path)
    assert result.only()["reader"] == "iis-w3c" and result.only()["records"] == 2
    [warning] = result.warnings
    assert warning["locator"] == "line 1" and "default IIS field order" in warning["message"] and warning["skipped"] == 0
    assert result.events[1]["fields"]["cs-username"] == "CORP\\alice"
    assert result.events[1]["fields"]["cs(Referer)"] == "https://mail.example.org/owa/"


def test_time_without_date_takes_the_date_from_the_header(tmp_path: Path) -> None:
    text = "#Software: Microsoft Internet Information Services 8.5\n#Date: 2021-03-04 00:00:00\n" \
        "#Fields: time c-ip cs-method cs-uri-stem sc-status\n10:11:12 203.0.113.7 GET /owa/ 200\n"
    result = read(tmp_path, write(tmp_path, "u_ex210304.log", text))
    assert str(result.events[0]["ts"]) == "2021-03-04 10:11:12"


def test_bom_and_blank_and_comment_lines(tmp_path: Path) -> None:
    text = b"\xef\xbb\xbf" + HEADER.encode() + b"# a comment\r\n\r\n" + Y_JS.encode() + b"\r\n\n" + OWA.encode()
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    assert result.warnings == []
    assert [e["locator"] for e in result.events] == ["line 7", "line 9"]
    assert result.events[0]["fields"]["date"] == "2021-03-03"


def test_damaged_lines_are_counted_and_the_rest_is_kept(tmp_path: Path) -> None:
    bad_time = Y_JS.replace("06:49:42", "26:61:99")
    huge = "2021-03-03 06:50:00 10.0.0.5 GET /owa/" + "A" * (linelog.MAX_LINE_BYTES + 10) + " - 443 - x y - 200 0 0 1"
    text = (HEADER + Y_JS + "\n" + "2021-03-03 06:49:43 10.0.0.5 GET /owa/ - 443\n" + bad_time + "\n").encode() \
        + SHELL.encode().replace(b"Win64", b"Win\xff64") + b"\n" + huge.encode() + b"\n" + OWA.encode() + b"\n"
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    evidence = result.only()
    assert evidence["records"] == 4 and evidence["skipped_records"] == 2 and evidence["complete"]
    by_line = {w["locator"]: w for w in result.warnings}
    assert "wrong number of columns" in by_line["line 6"]["message"] and by_line["line 6"]["skipped"] == 1
    assert "not a valid time" in by_line["line 7"]["message"] and by_line["line 7"]["skipped"] == 0
    assert "invalid UTF-8" in by_line["line 8"]["message"] and by_line["line 8"]["skipped"] == 0
    assert "longer than" in by_line["line 9"]["message"] and by_line["line 9"]["skipped"] == 1
    assert [e["locator"] for e in result.events] == ["line 5", "line 7", "line 8", "line 10"]
    assert result.events[1]["ts"] is None and result.events[1]["fields"]["cs-uri-stem"] == "/ecp/y.js"
    assert "Win\ufffd64" in result.events[2]["fields"]["cs(User-Agent)"]


def test_warnings_per_line_are_capped_but_every_line_is_counted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(linelog, "MAX_LINE_WARNINGS", 3)
    text = HEADER + "junk\n" * 10 + Y_JS + "\n"
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    assert result.only()["records"] == 1 and result.only()["skipped_records"] == 10
    assert len(result.warnings) == 4 and result.warnings[-1]["message"].startswith("7 more lines: wrong number")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_big_file_read_in_parts_gives_the_same_events(tmp_path: Path, monkeypatch, workers: int) -> None:
    lines = [Y_JS.replace("06:49:42", f"06:{n // 60 % 60:02d}:{n % 60:02d}") for n in range(400)]
    second_header = "#Software: Microsoft Internet Information Services 10.0\n#Fields: " + FIELDS + " s-sitename\n"
    text = HEADER + "\n".join(lines[:250]) + "\n" + second_header + "\n".join(f"{x} W3SVC2" for x in lines[250:]) + "\n"
    path = write(tmp_path, "u_ex210303.log", text)
    whole = read(tmp_path, path)
    monkeypatch.setattr(varde.ingest, "PART_BYTES", 4096)
    assert len(W3cReader().split(read_evidence(path), 4096)) > 10
    parts = read(tmp_path, path, workers=workers)
    assert parts.only()["records"] == whole.only()["records"] == 400 and parts.warnings == []
    assert parts.only()["sha256"] == whole.only()["sha256"]
    assert parts.events == whole.events
    assert whole.events[-1]["fields"]["s-sitename"] == "W3SVC2"


def read_evidence(path: Path):
    from varde.sources.base import EvidenceFile

    return EvidenceFile(str(path), path, size=path.stat().st_size)


def test_sniffing_is_by_content() -> None:
    reader = W3cReader()
    assert reader.sniff(HEADER.encode(), "anything.bin")
    assert reader.sniff((Y_JS + "\n").encode(), "x.txt")
    assert not reader.sniff(b"#Software: Microsoft Exchange Server\n#Fields: DateTime,RequestId\n", "u_ex.log")
    assert not reader.sniff(b'{"Event": {}}\n', "u_ex.log")


# --- corpus ----------------------------------------------------------------------------------------

MARKERNAN = "exchange-logs/markernan-proxylogon-siem-detection/data/iis_logs.log"
TUNNA = "evtx-samples/sbousseaden-EVTX-ATTACK-SAMPLES/Command and Control/Tunna_rdp_tunnel_IIS.log"


def test_markernan_proxylogon_iis_log_is_read_whole(corpus: Path, tmp_path: Path) -> None:
    result = read(tmp_path, corpus / MARKERNAN)
    assert result.only()["reader"] == "iis-w3c"
    assert result.only()["records"] == 296 and result.only()["skipped_records"] == 0
    assert result.warnings == []
    attacker = [e for e in result.events if e["fields"]["c-ip"] == "103.77.192.219"]
    assert len(attacker) == 13
    assert {e["fields"]["cs-uri-stem"] for e in attacker} >= {"/ecp/proxyLogon.ecp", "/owa/auth/help.aspx"}


def test_tunna_iis_log_with_a_comment_a_blank_line_and_two_headers(corpus: Path, tmp_path: Path) -> None:
    result = read(tmp_path, corpus / TUNNA)
    assert result.only()["records"] == 4298 and result.only()["skipped_records"] == 0
    assert result.warnings == []
    assert result.events[0]["locator"] == "line 7"
    assert result.events[0]["fields"]["cs-uri"] == "/erp/conn.aspx?proxy&port=3389&ip=127.0.0.1"
    assert sum(e["fields"]["cs-uri-stem"] == "/erp/conn.aspx" for e in result.events) > 4000


def test_a_header_naming_thousands_of_fields_is_ignored(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(linelog, "MAX_FIELDS", 50)
    text = HEADER + Y_JS + "\n#Fields: " + " ".join(f"f{n}" for n in range(51)) + "\n" + OWA + "\n"
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    assert [w["locator"] for w in result.warnings] == ["line 6", "line 7"]
    assert "more than 50 names ignored" in result.warnings[0]["message"]
    assert "default IIS field order" in result.warnings[1]["message"]  # from there on, as without a header
    assert result.only()["records"] == 2 and result.events[1]["fields"]["cs-username"] == "CORP\\alice"


def test_comments_and_repeated_headers_do_not_cut_the_rows_into_pieces(tmp_path: Path, monkeypatch) -> None:
    calls = []
    parse = linelog.parse_lines
    monkeypatch.setattr(linelog, "parse_lines", lambda *args: calls.append(1) or parse(*args))
    text = HEADER + "".join(f"{Y_JS}\n# note {n}\n#Fields: {FIELDS}\n" for n in range(100))
    result = read(tmp_path, write(tmp_path, "u_ex210303.log", text))
    assert result.only()["records"] == 100 and result.warnings == []
    assert [e["locator"] for e in result.events][:2] == ["line 5", "line 8"]
    assert len(calls) == 1
