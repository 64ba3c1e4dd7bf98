"""Analysis: turn findings into answers (vulnerabilities, web shells, intruders, attribution)."""
