"""The study in miniature: a toy corpus, the four conditions, and the report."""
