"""The one error type for bad input: a file, an argument or a setting that ``come`` cannot use.

Every check of what a user gives raises :class:`InputError` (or a subclass: a checkpoint, an episode);
the command line reports it as one ``error:`` line and exit code 2. Any other exception is a bug and
shows as one. It is a ``ValueError``, so code that catches those keeps working.
"""


class InputError(ValueError):
    """Bad input: says which file, argument or setting, and what is wrong with it."""
