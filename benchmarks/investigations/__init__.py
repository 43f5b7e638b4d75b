"""One-off investigations behind docs/performance.md (run with ``python -m benchmarks.investigations.NAME``)."""
