"""The benchmark scripts (run as ``python benchmarks/<name>.py``), a regular package so that the
tests' ``from benchmarks.x import ...`` finds these: opacus' wheel installs a top-level package of
its own named ``benchmarks``, which would win over a namespace package of that name."""
