"""The one exception type a user ever sees: the CLI prints its message as one line."""


class DerrumbeError(Exception):
    """A problem with the user's input or environment, phrased for the user.

    Anything else that escapes is a bug in derrumbe and keeps its traceback.
    """
