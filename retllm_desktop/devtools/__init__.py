"""Developer tools: synthetic random-weight models for tests and benchmarks (no torch needed)."""
