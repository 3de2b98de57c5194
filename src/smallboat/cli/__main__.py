"""`python -m smallboat.cli ...` (how the tests and benchmarks start a real server)."""

from smallboat.cli import app

app()
