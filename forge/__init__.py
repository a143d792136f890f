"""forge: turn your own notes and data into a fine-tuned model you can serve."""

__version__ = "0.1.0"
