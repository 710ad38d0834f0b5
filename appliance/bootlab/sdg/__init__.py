"""Synthetic data generation: taxonomy leaves sent to a teacher model through an
OpenAI-compatible endpoint, answers parsed and filtered into the messages JSONL that
training imports. Progress is checkpointed task by task, so an interrupted run continues
where it stopped."""
