"""The errors edgevoice raises on purpose: each carries a message meant for a person."""


class EdgevoiceError(Exception):
    """Base of every error that edgevoice reports to the user without a traceback."""


class ConfigError(EdgevoiceError):
    """The configuration file, environment or command line holds a bad value."""


class ModelError(EdgevoiceError):
    """A model file is missing, truncated, of the wrong format, or cannot be loaded."""


class AudioError(EdgevoiceError):
    """Input that was meant to be audio cannot be read or used."""
