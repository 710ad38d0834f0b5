"""bootlab's benchmarks, run as modules from the repository root (`python -m bench.serve`),
each inside the one harness (`bench.harness`) and each printing one JSON object as its last
stdout line; `bench.history` keeps those lines across CI runs."""
