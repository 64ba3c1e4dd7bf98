"""report.html in headless Chromium: hostile evidence never runs, and a real case renders.

The hostile case puts script payloads into every attacker-controlled field the report shows (user
agent, URL and query, cmdlet parameters, file names, hence evidence text and web shell paths).
Each payload, if it ever ran, would mark the document element; the DOM Chromium ends with must
carry no mark, no ``<script>`` element and no event handler attribute. The check runs twice: as
written (with its Content-Security-Policy) and with the policy taken out, so escaping alone is
shown to hold.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from browser import run

from varde.report.html import render_html

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
from intrusion_case import build

MARK = "document.documentElement.setAttribute('data-pwned','1')"
HOSTILE = (f"\"'><script>{MARK}</script><img src=x onerror=\"{MARK}\"><svg onload={MARK}>"
           f"</pre></details></td><iframe srcdoc='<script>parent.{MARK}</script>'>{{{{7*7}}}}\u202e")


@pytest.fixture(scope="module")
def hostile_html(tmp_path_factory) -> str:
    report = build(tmp_path_factory.mktemp("hostile-case"), hostile=HOSTILE)
    shown = report.model_dump_json()
    assert "onerror" in shown and "<script>" in shown  # the payload reached the report
    return render_html(report)


@pytest.mark.parametrize("policy", ["with CSP", "without CSP"])
def test_hostile_strings_in_the_evidence_never_run(hostile_html, tmp_path, policy):
    html = hostile_html if policy == "with CSP" else re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "",
                                                          hostile_html)
    page = tmp_path / "report.html"
    page.write_text(html, encoding="utf-8")
    dom = run(page, tmp_path / "profile", "--dump-dom")
    assert "<main>" in dom  # the page rendered
    assert "data-pwned" not in dom.split("<body", 1)[0] and 'data-pwned="1"' not in dom
    assert "<script" not in dom.lower() and "<iframe" not in dom.lower()
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", dom, re.IGNORECASE)
    assert "&lt;script&gt;" in dom  # shown as text
    assert "{{7*7}}" in dom  # data is never evaluated as a template
    assert "\u202e" not in dom and "\\u202e" in dom  # a bidi override is shown, not obeyed


def test_screenshot_of_a_real_case(corpus, tmp_path):
    """The OTRF ProxyLogon lab (recorded events of a real exploitation), hunted and rendered."""
    from varde.pipeline import HuntOptions, hunt

    zip_path = corpus / ("exchange-logs/otrf-security-datasets/datasets/atomic/windows/persistence/host/"
                         "proxylogon_ssrf_rce_poc.zip")
    result = hunt([zip_path], tmp_path / "case", HuntOptions(workers=2))
    page = tmp_path / "case" / "report.html"
    assert result.report.verdict.compromised and page.is_file()
    shot = tmp_path / "report.png"
    run(page, tmp_path / "profile", "--window-size=1200,1800", f"--screenshot={shot}")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
