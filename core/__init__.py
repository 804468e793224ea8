"""Code shared by the API, the worker, the agent and the tests: settings and boundary data."""
