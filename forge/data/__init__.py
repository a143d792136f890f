"""Data: your notes and files → examples in the store → a train/val/test dataset. Open `extract/` first (one module
per source kind; `run_extract` stores what they read), then `validate` and `curate` (the checks and the decisions a
person takes), `dedup` and `leakage` (near-duplicates), `dataset` (the export a run trains on) and `tokens`."""
