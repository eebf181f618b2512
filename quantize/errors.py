"""Errors raised by quantize; the CLI maps them to exit status 2 and a one-line message.

QuantizeError
 +-- DataError      a data file is missing, malformed or inconsistent (names file and row)
 +-- ModelError     a model file cannot be read, has an unexpected shape, or conversion failed
"""


class QuantizeError(Exception):
    """Base class of every error quantize reports to the user."""


class DataError(QuantizeError):
    """Labelled face data cannot be read."""


class ModelError(QuantizeError):
    """A Keras or TFLite model cannot be used."""
