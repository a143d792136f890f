"""Training: a spec, a runner process (`python -m forge.train.runner RUN_DIR`), its events, and run control."""
