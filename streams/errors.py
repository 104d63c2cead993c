"""The product's own errors: what went wrong and how to fix it, without a traceback.

A command raises a :class:`UserError` (or a subclass) for anything the user can fix: a broker
that does not answer, a file that is not there, an input that cannot be read.
``streams/cli/main.py`` prints it as one or two lines and exits with its ``exit_code``::

    driftloop produce: no Kafka broker answers at 127.0.0.1:9092 (tried for 5 s)
      fix: start one with `driftloop up` (the whole stack) or `driftloop kafka start`, ...

Pure: no Kafka, Faust or Ray imports.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user can fix; ``fix`` says how (one line)."""

    exit_code = 1

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def lines(self) -> list[str]:
        return [self.message] + ([f"  fix: {self.fix}"] if self.fix else [])


class BrokerUnreachable(UserError):
    """No Kafka broker answered at the configured address."""

    exit_code = 3

    def __init__(self, bootstrap: str, waited_s: float, detail: str = "") -> None:
        self.bootstrap = bootstrap
        super().__init__(
            f"no Kafka broker answers at {bootstrap} (tried for {waited_s:.0f} s{'; ' + detail if detail else ''})",
            "start one with `driftloop up` (the whole local stack) or `driftloop kafka start`, or point "
            "KAFKA_BOOTSTRAP_SERVERS / kafka.bootstrap_servers at a running cluster",
        )


class MissingFile(UserError):
    """A file named on the command line or in the config is not there."""

    exit_code = 2

    def __init__(self, path: object, what: str = "file", fix: str = "") -> None:
        self.path = path
        super().__init__(f"{what} {path} does not exist", fix or "check the path (relative paths start at the "
                         "current directory)")


class BadInput(UserError):
    """An input file cannot be read as what the command expects."""

    exit_code = 2


class StackError(UserError):
    """A component of the local stack did not start, stop or answer."""

    exit_code = 1


__all__ = ["UserError", "BrokerUnreachable", "MissingFile", "BadInput", "StackError"]
