"""derrumbe: a plate of a real building in, a photoreal collapse shot out."""

__version__ = "0.1.0"
