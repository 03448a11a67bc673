"""Side-by-side benchmark of the catalog service: `bash bench/run --help` (see docs/performance.md)."""
