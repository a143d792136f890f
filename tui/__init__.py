"""forge's Textual terminal UI. Imports forge/, never torch at import time."""
