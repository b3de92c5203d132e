"""alignpt: a lab for alignment pretraining."""

__version__ = "0.1.0"
