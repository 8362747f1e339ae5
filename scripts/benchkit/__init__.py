"""Benchmarks of customer portraits: worker throughput, freshness, API latency, footprint, scaling."""
