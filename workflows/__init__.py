"""Temporal workflows of the call center: deterministic orchestration only, no I/O."""
