"""YARA over the shared corpus: real IIS logs and event logs (skipped without ../shared).

- The built-in file rules must not fire on any of the corpus's Exchange logs, the IIS logs of
  the Tunna web shell tunnel or the attack EVTX samples of that folder (no false positives).
- A log rule in signature-base's style, written here from Volexity's published HAFNIUM
  user agents (2021-03-02), finds the POST lines that carry one of them in the Markernan IIS
  log, with the right line numbers (counted here independently of varde, header lines included).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from varde.pipeline import HuntOptions, hunt

pytestmark = pytest.mark.corpus

#: User agents Volexity published for the HAFNIUM Exchange intrusions (IIS writes spaces as "+").
HAFNIUM_AGENTS = (
    "DuckDuckBot/1.0;+(+http://duckduckgo.com/duckduckbot.html)",
    "facebookexternalhit/1.1+(+http://www.facebook.com/externalhit_uatext.php)",
    "Mozilla/5.0+(compatible;+Baiduspider/2.0;++http://www.baidu.com/search/spider.html)",
    "ExchangeServicesClient/0.0.0.0",
    "python-requests/2.25.1",
    "antSword/v2.1",
)

AGENT_STRINGS = "\n".join(f'      $ua{n} = "{agent}"' for n, agent in enumerate(HAFNIUM_AGENTS))
RULE = f"""
rule LOG_Test_HAFNIUM_UserAgents_POST : LOG {{
   meta:
      description = "POST request from a user agent Volexity listed for HAFNIUM"
      author = "varde tests"
      reference = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"
      score = 60
   strings:
      $post = " POST /"
{AGENT_STRINGS}
   condition:
      $post and 1 of ($ua*)
}}
"""


def test_builtin_rules_quiet_and_log_rule_lines_on_real_logs(corpus: Path, tmp_path: Path) -> None:
    markernan = corpus / "exchange-logs" / "markernan-proxylogon-siem-detection" / "data" / "iis_logs.log"
    tunnel = corpus / "evtx-samples" / "sbousseaden-EVTX-ATTACK-SAMPLES" / "Command and Control"
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "hafnium_log.yar").write_text(RULE, encoding="utf-8")
    options = HuntOptions(builtin_rules=False, workers=0, yara_dirs=(rules,))
    report = hunt([corpus / "exchange-logs", tunnel], tmp_path / "case", options).report

    assert [f.title for f in report.findings if f.rule_id.startswith("varde/")] == []
    [entry] = [r for r in report.case.rulesets if r.source == str(rules)]
    assert (entry.rules, entry.errors) == (1, 0)

    expected: dict[str, list[str]] = {}
    for log in sorted([markernan, *tunnel.glob("*.log")]):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        hits = [f"line {n}" for n, line in enumerate(lines, 1)
                if " POST /" in line and any(agent in line for agent in HAFNIUM_AGENTS)]
        if hits:
            expected[str(log)] = hits
    assert str(markernan) in expected  # the corpus has them: the test below is not vacuous
    found: dict[str, list[str]] = {}
    for finding in report.findings:
        if finding.rule_id == "hafnium_log:LOG_Test_HAFNIUM_UserAgents_POST":
            assert finding.severity == "medium" and finding.count == sum(len(v) for v in expected.values())
            for ref in finding.evidence:
                found.setdefault(ref.path, []).append(ref.locator)
    assert found == expected
