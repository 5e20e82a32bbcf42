"""One exception hierarchy for everything the user can get wrong.

Messages follow "<what rule>, but got <value>. <how to fix>" so the CLI can print them as they are.
"""


class BenchError(Exception):
    """Root of every error bench raises on purpose; the CLI prints it and exits with its ``exit_code``."""

    exit_code = 2  # bad arguments or data; a run that failed on its way (bench.diskspace.DiskFull) says 1


class ConfigError(BenchError):
    """A trial config, search space or preset is invalid."""


class RegistryError(ConfigError):
    """An unknown or duplicate registry name."""


class DataError(BenchError):
    """Input data is missing, unreadable or inconsistent (the message names the file)."""


class SplitError(DataError):
    """A split file is inconsistent with the data or leaks patients between parts."""


class TrialPruned(Exception):
    """Raised inside a trial when its reporter asks it to stop early; backends map it to their own."""


class BenchWarning(UserWarning):
    """Something about bench's own state a person should act on; the CLI prints it as one line,
    ``bench: warning: ...``, wherever the stack level points."""


def describe_error(exc: BaseException) -> str:
    """What went wrong in ``exc``, as a message's reason reads it: no Python repr (``KeyError('training')``
    reads "it has no 'training'"), the first line of the text, else the exception's class name."""
    if isinstance(exc, KeyError) and exc.args:
        return f"it has no '{exc.args[0]}'"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
