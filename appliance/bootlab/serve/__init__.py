"""Serving: one module per backend concern. `backends` knows vLLM and llama.cpp (which files
each serves, how to start it), `preflight` checks everything before a GPU is touched, and
`supervise` runs the backend for systemd: READY only once the model answers, a watchdog
while it keeps answering, a graceful stop."""
