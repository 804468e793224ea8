"""Shared fixtures live in tests/fixtures/; each component's tests sit in a folder of their own."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.livekit"]
