"""The embedded default for one machine: the whole call center from PyPI wheels, no Docker."""
