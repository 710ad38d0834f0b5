"""Helpers the tiers and the benches share (real infrastructure, the tiny model, test data),
not tests themselves: `from tests.support.infra import ...` from the repository root."""
