"""Analysis: the drgn-based engine, crash-compatible commands, the triage report."""
