"""Analysis of findings: the ATT&CK index and attribution."""
