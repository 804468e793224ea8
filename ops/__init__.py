"""`python -m ops` (console script `callcenter-ops`): the ops engineer's command line.

Everything here is client side: it talks to Temporal (through the same functions the API uses,
`workflows/client.py`) and reads PostgreSQL; it never imports the worker's activities. Exit codes:
0 done, 1 something checked or acted on failed, 2 bad usage or settings, 3 Temporal or
PostgreSQL cannot be reached (said in one line, no traceback).
"""
