"""SigmaHQ ``webserver`` rules on IIS and Exchange HttpProxy events (data/logsources.yml).

The rule is SigmaHQ's own (read from the shared corpus, unmodified); the log lines are written
from the documented formats: the ProxyLogon request ``POST /ecp/y.js`` as IIS logs it on the
front end (cs-uri-query holds only Exchange's ``&CorrelationID=...`` suffix, so the rule's
``cs-uri-query|contains: '/ecp/'`` meets it only through the whole-URI mapping) and as HttpProxy
logs it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sources.test_exchange_csv import HTTPPROXY_FIELDS, PROXYLOGON, header, httpproxy_row
from sources.test_w3c import HEADER, OWA, Y_JS

from varde.pipeline import HuntOptions, hunt

HAFNIUM = "rules-emerging-threats/2021/TA/HAFNIUM/web_exchange_exploitation_hafnium.yml"
HAFNIUM_ID = "67bce556-312f-4c81-9162-c3c9ff2599b2"


def test_sigmahq_hafnium_rule_fires_on_iis_and_httpproxy_lines(corpus: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(corpus / "sigma" / HAFNIUM, rules)
    evidence = tmp_path / "evidence"
    (evidence / "W3SVC1").mkdir(parents=True)
    (evidence / "W3SVC1" / "u_ex210303.log").write_text(HEADER + Y_JS + "\n" + OWA + "\n")
    (evidence / "Ecp").mkdir()
    (evidence / "Ecp" / "HttpProxy_2021030306-1.LOG").write_text(
        header("HttpProxy Logs", HTTPPROXY_FIELDS) + httpproxy_row(**PROXYLOGON) + "\n")
    result = hunt([evidence], tmp_path / "case", HuntOptions((rules,), builtin_rules=False, workers=0))
    findings = [f for f in result.report.findings if f.rule_id == HAFNIUM_ID]
    assert {f.host for f in findings} == {None, "EXCH01"}  # IIS logs no host; HttpProxy's ServerHostName
    evidence = sorted((Path(ref.path).name, ref.locator) for f in findings for ref in f.evidence)
    assert evidence == [("HttpProxy_2021030306-1.LOG", "line 6"), ("u_ex210303.log", "line 5")]  # not the OWA line
