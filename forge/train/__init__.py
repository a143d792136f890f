"""Training: a spec, a runner process (`python -m forge.train.runner RUN_DIR`), its events, and run control. Open
`runs` first (create, launch, stop, finalize a run), then `spec` and `recipes` (what a run does), `runner` (the
training itself), `lengths` (token lengths and truncation), `events` and `checkpoints` (the completion marker)."""
