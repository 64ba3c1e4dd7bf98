/*
   varde built-in YARA rules: LSASS memory dumps, by content rather than by name.

   Written by the varde authors for varde (Apache-2.0), from these public descriptions:
   - Microsoft Learn, MINIDUMP_HEADER: a minidump starts with the signature "MDMP"
     (0x504D444D, little-endian) and lists the dumped process's modules as UTF-16 paths.
   - mimikatz / pypykatz documentation: credentials are read from the lsasrv, msv1_0, wdigest,
     kerberos, tspkg and livessp modules of an lsass.exe dump.
   - Microsoft Security Blog (2021-03-02, HAFNIUM) and Test-ProxyLogon.ps1 (CSS-Exchange): LSASS
     dumped with procdump or comsvcs.dll MiniDump on compromised Exchange servers; the script
     only looks for lsass*.dmp by name.
*/

rule Credential_Dump_LSASS_Minidump
{
    meta:
        title = "Minidump of the LSASS process (credential dump)"
        description = "A Windows minidump (MDMP header) whose module list names lsass.exe or the LSASS authentication packages: a credential dump, whatever the file is called"
        author = "varde"
        reference = "https://learn.microsoft.com/en-us/windows/win32/api/minidumpapiset/ns-minidumpapiset-minidump_header"
        reference2 = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/Test-ProxyLogon.ps1"
        severity = "critical"
        mitre_attack = "T1003.001"
    strings:
        $lsass = "\\lsass.exe" nocase wide
        $p1 = "\\lsasrv.dll" nocase wide
        $p2 = "\\msv1_0.dll" nocase wide
        $p3 = "\\wdigest.dll" nocase wide
        $p4 = "\\kerberos.dll" nocase wide
        $p5 = "\\tspkg.dll" nocase wide
        $p6 = "\\livessp.dll" nocase wide
        $p7 = "\\samsrv.dll" nocase wide
    condition:
        uint32(0) == 0x504D444D and ($lsass or 3 of ($p*))
}
