/*
   varde built-in YARA rules: ASP.NET web shells seen on Exchange servers.

   Written by the varde authors for varde (Apache-2.0), from these public descriptions:
   - FireEye, "Breaking Down the China Chopper Web Shell" (2013): the one-line JScript server
     page that hands a request parameter to eval(..., "unsafe").
   - Microsoft Security Blog, "HAFNIUM targeting Exchange Servers with 0-day exploits"
     (2021-03-02) and Volexity, "Operation Exchange Marauder" (2021-03-02): CVE-2021-27065
     writes the OAB virtual directory settings, with a script in ExternalUrl, to a file under
     FrontEnd\HttpProxy\owa\auth or aspnet_client.
   - helsecert/2021-march-exchange (README, ECP server log line): the ExternalUrl value
     http://f/<script language="JScript" runat="server">function Page_Load(){eval(Request["..."],"unsafe");}</script>
   - CISA AR21-072 / MAR-10328929 (2021-03): China Chopper variants in aspnet_client.
   The strings are facts of those write-ups; no rule text was copied from other rule sets.
   A file gets the most specific rule only: the OAB shell rule, else the Page_Load rule, else the
   one-liner rule. Files named .log are left out: IIS does not run them, and a shell's text in an
   Exchange log (the ECP server log records the ExternalUrl) is exploitation evidence for the log
   detectors and log rules, not a planted shell.
*/

rule Webshell_Exchange_OAB_VirtualDirectory_Script
{
    meta:
        title = "OAB virtual directory settings with a server script in ExternalUrl or InternalUrl (CVE-2021-27065)"
        description = "A file holding Exchange OAB virtual directory settings whose ExternalUrl or InternalUrl carries a runat=server script: the web shell ProxyLogon writes with ResetOABVirtualDirectory"
        author = "varde"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
        reference2 = "https://github.com/helsecert/2021-march-exchange"
        severity = "critical"
        cve = "CVE-2021-27065"
        mitre_attack = "T1505.003, T1190"
    strings:
        $oab1 = "OAB (Default Web Site)" nocase ascii wide
        $oab2 = "OfflineAddressBooks" nocase ascii wide
        $oab3 = "OABVirtualDirectory" nocase ascii wide
        $oab4 = "/ROOT/OAB" nocase ascii wide
        // the property as a settings file holds it ("ExternalUrl   : ..." or "<ExternalUrl>..."),
        // not as a logged cmdlet parameter ("ExternalUrl=..." in the ECP server log)
        $url = /(External|Internal)Url\s{0,40}[:>][^\r\n<]{0,200}<script[^>]{0,200}runat\s*=\s*["']?server/ nocase ascii wide
    condition:
        filesize < 5MB and $url and 1 of ($oab*) and extension != ".log"
}

rule Webshell_ASPX_PageLoad_Eval
{
    meta:
        title = "ASP.NET page whose Page_Load evaluates request input"
        description = "A runat=server script block defines Page_Load and evaluates request data, as in the shells written through CVE-2021-27065"
        author = "varde"
        reference = "https://www.volexity.com/blog/2021/03/02/active-exploitation-of-microsoft-exchange-zero-day-vulnerabilities/"
        severity = "high"
        mitre_attack = "T1505.003"
    strings:
        $runat = /<script[^>]{0,200}runat\s*=\s*["']?server/ nocase ascii wide
        $load = /function\s+Page_Load\s*\(/ nocase ascii wide
        $eval = /eval\s*\([^;\n]{0,200}Request/ nocase ascii wide
    condition:
        filesize < 5MB and all of them and extension != ".log"
        and not Webshell_Exchange_OAB_VirtualDirectory_Script
}

rule Webshell_ASPX_JScript_Eval_Request
{
    meta:
        title = "China Chopper-style JScript web shell: eval of a request parameter"
        description = "A server page evaluates a request parameter as JScript with the \"unsafe\" option, the China Chopper one-liner and its variants"
        author = "varde"
        reference = "https://www.mandiant.com/resources/blog/breaking-down-the-china-chopper-web-shell-part-i"
        reference2 = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
        severity = "high"
        mitre_attack = "T1505.003"
    strings:
        $eval = /eval\s*\([^;\n]{0,300}Request[^;\n]{0,300}["']unsafe["']/ nocase ascii wide
    condition:
        filesize < 5MB and $eval and extension != ".log"
        and not Webshell_Exchange_OAB_VirtualDirectory_Script and not Webshell_ASPX_PageLoad_Eval
}
