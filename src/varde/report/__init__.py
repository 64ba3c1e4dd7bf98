"""Report: the result document and its renderers."""
