"""Evaluation: multiple-choice benchmarks scored from the model's log-probabilities (MMLU
style, a small local task format), judge-based benchmarks (the model answers, a judge
endpoint scores, MT-Bench style), and comparisons of two models on the same questions
(InstructLab's "branch" evaluation on a taxonomy's own questions).

`tasks` reads benchmark files (line-numbered errors); `worker` runs in the ML venv and does
what needs the model (log-probabilities, answers); `run` drives it, asks the judge and
assembles the results."""
