"""LLM-made examples: an OpenAI-compatible endpoint asked for text under a budget. Open `endpoint` first (one
endpoint, its retries and hard caps), then `generate` (new examples from seed examples) and `backtranslate` (a
question for each note, so the note becomes its answer)."""
