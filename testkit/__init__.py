"""What the tests and the benchmarks share to drive the workflows without the rest of the stack.

- `testkit.standins`: `StandIns`, activities registered under the real names that record every
  call and fail on request; `egress_file`, `until`.
- `testkit.harness`: `Harness`, a worker with stand-ins on a task queue of its own, and the
  moves a call's outside world makes (start, agent joins, a line, customer leaves);
  `running_harness`, `patiently`, `stop_leftovers`.
- `testkit.temporal`: the time-skipping test server started ready for the workflows (search
  attributes registered), for scripts that run outside pytest.

`tests/` (its fixtures wrap these) and `bench/` import it; `bench/` never imports `tests/`.
Production code (core, db, workflows, activities, api, agent, ops, devstack, worker.py) never
imports it, and the image leaves it out (.dockerignore): tests/test_layout.py checks both.
"""
