"""Detection: Sigma rules (and, in later stages, YARA, IOC sets and built-in detectors)."""
