"""The one exception type that turns into a clean, one-line failure.

Anything the user can fix (bad config, missing data, wrong checkpoint, diverged loss) is raised
as `JobError`; the CLI writes its message to the termination log and exits non-zero, so
the operator can show the reason in the CR's status without anyone reading pod logs.
"""


class JobError(Exception):
    """A failure with a reason meant for the user (kept to one line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(reason.split()))

    @property
    def reason(self) -> str:
        """The one-line reason."""
        return str(self)
