"""Tokenizing, packing and (mid)training GPT-NeoX models."""
