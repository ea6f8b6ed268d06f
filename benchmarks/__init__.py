"""forge-ref benchmark harness: seeding, the runner, results loading and the report (python -m benchmarks)."""
