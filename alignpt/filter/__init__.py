"""Filtering AI discourse out of a corpus: the study's recall-first blocklist, explainable and
fast, as a datatrove pipeline step that runs on datatrove's local, Slurm and Ray executors."""
