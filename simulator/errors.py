"""User-facing failures. The CLI turns each into one line on stderr and exit code 2."""

from __future__ import annotations


class SimulatorError(Exception):
    """A failure caused by what the user gave us, reported without a traceback."""

    exit_code = 2


class InputError(SimulatorError):
    """Bad input: names the file and, where known, the line, document or record."""

    def __init__(self, path: object, message: str, where: str | None = None) -> None:
        self.path = str(path)
        self.where = where
        self.message = message
        location = f"{self.path}: {where}" if where else self.path
        super().__init__(f"{location}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        # raised in a parsing worker process, re-raised here
        return type(self), (self.path, self.message, self.where)


class PolicyError(InputError):
    """A policy the API server would reject."""


class UsageError(SimulatorError):
    """Bad command-line usage that click itself cannot catch."""


class UnusableInput(InputError):
    """An input file that cannot be used at all (empty, not a flow format, a broken
    header). Named on its own it ends the run; found in a directory or glob it is skipped
    and listed, and the run goes on with the rest."""


class NothingToJudge(InputError):
    """The run evaluated no record: every one was skipped (the message counts them by
    reason). Exit code 2, never a quiet "nothing would break"."""
