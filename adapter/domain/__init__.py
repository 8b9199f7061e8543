"""The vocabulary every layer shares: value objects (``models``) and the exception tree (``errors``).

The bottom layer: imports nothing else from :mod:`adapter` and no I/O library.
"""
