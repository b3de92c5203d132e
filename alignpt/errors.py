"""Errors that the command line reports as one clear message, without a traceback."""


class UserError(Exception):
    """A mistake in what the user asked for or gave us (bad file, bad flag, unreachable server)."""
