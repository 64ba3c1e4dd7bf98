/*
   varde built-in YARA rules: data staged for theft on an Exchange server, by content.

   Written by the varde authors for varde (Apache-2.0), from these public descriptions:
   - Microsoft Security Blog, "HAFNIUM targeting Exchange Servers" (2021-03-02): 7-Zip and
     WinRAR archives of stolen data and mailbox exports staged in web folders for download.
   - Test-ProxyLogon.ps1 (CSS-Exchange): .7z, .zip and .rar files under ProgramData are suspicious.
   - Orange Tsai / ZDI on ProxyShell (2021-08) and signature-base's description of the mailbox
     export web shell: New-MailboxExportRequest writes a PST (header "!BDN") with an .aspx name
     into a web root.
   - File format signatures: zip "PK\x03\x04", 7z "7z\xBC\xAF\x27\x1C", RAR 4 and 5 "Rar!\x1A\x07",
     Microsoft cabinet "MSCF" (makecab), Outlook PST "!BDN".
   filepath, filename and extension are set by varde for each file (filepath: its folder with
   Windows separators; extension: lower case with the dot).
*/

private rule varde_in_web_root
{
    condition:
        filepath icontains "\\inetpub\\wwwroot" or filepath icontains "\\aspnet_client"
        or filepath icontains "\\FrontEnd\\HttpProxy" or filepath icontains "\\ClientAccess"
}

private rule varde_archive_header
{
    condition:
        uint32(0) == 0x04034B50
        or (uint32(0) == 0xAFBC7A37 and uint16(4) == 0x1C27)
        or (uint32(0) == 0x21726152 and uint16(4) == 0x071A)
        or uint32(0) == 0x4643534D
}

rule Staging_Archive_In_Web_Root
{
    meta:
        title = "Archive (zip, 7z, rar or cab) in an Exchange or IIS web folder"
        description = "An archive by its header in a folder IIS serves, where stolen data is staged for download"
        author = "varde"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
        severity = "high"
        mitre_attack = "T1560.001, T1074.001"
    condition:
        varde_archive_header and varde_in_web_root
}

rule Staging_Archive_Disguised_Or_Mail
{
    meta:
        title = "Archive named as mail data or disguised under another file type"
        description = "An archive by its header, outside the web folders (another rule covers those), whose name says it holds mailbox data (.pst, .ost, .edb), or whose extension claims a page, image, text or dump file"
        author = "varde"
        reference = "https://www.microsoft.com/security/blog/2021/03/02/hafnium-targeting-exchange-servers/"
        severity = "high"
        mitre_attack = "T1560.001, T1074.001"
    condition:
        varde_archive_header and not varde_in_web_root and (
            filename matches /\.(pst|ost|edb)([._-]|$)/i
            or extension == ".aspx" or extension == ".ashx" or extension == ".asmx" or extension == ".css"
            or extension == ".js" or extension == ".gif" or extension == ".jpg" or extension == ".png"
            or extension == ".txt" or extension == ".log" or extension == ".dmp" or extension == ".tmp"
        )
}

rule Staging_Mailbox_Export_PST_In_Web_Root
{
    meta:
        title = "Outlook PST file in a web folder or under a server-page name (mailbox export)"
        description = "A PST by its header in a folder IIS serves, or named .aspx/.ashx/.asmx: a mailbox export written where it can be downloaded, as ProxyShell's New-MailboxExportRequest does"
        author = "varde"
        reference = "https://www.zerodayinitiative.com/blog/2021/8/17/from-pwn2own-2021-a-new-attack-surface-on-microsoft-exchange-proxyshell"
        severity = "critical"
        mitre_attack = "T1114.001, T1074.001, T1505.003"
    condition:
        uint32(0) == 0x4E444221 and (
            varde_in_web_root or extension == ".aspx" or extension == ".ashx" or extension == ".asmx"
        )
}
