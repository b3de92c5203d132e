"""Synthetic AI discourse: surface forms, instructions, generation and checks."""
