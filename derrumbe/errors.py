"""The one exception type a user ever sees: the CLI prints its message as one line."""


class DerrumbeError(Exception):
    """A problem with the user's input or environment, phrased for the user.

    `field`, when known, names the spec field the problem is in, so the web page can
    mark that field and put the message beside it.

    Anything else that escapes is a bug in derrumbe and keeps its traceback.
    """

    def __init__(self, message: str = "", field: str | None = None):
        super().__init__(message)
        self.field = field
