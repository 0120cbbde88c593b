"""Simulated hardware and providers that the tests, the benchmarks and an
operator's dry run talk to over real interfaces (a pty, an HTTP socket)."""
