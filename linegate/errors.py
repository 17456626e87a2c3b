"""Exceptions that cross module boundaries; the CLI maps them to exit codes (a worker process to its own).

A :class:`ConfigError` (and every subclass) means no restart can help: exit 78 (EX_CONFIG), which
the unit lists in ``RestartPreventExitStatus=``.
"""


class LinegateError(Exception):
    """Base class for errors linegate reports to the user."""


class ConfigError(LinegateError):
    """The configuration file is missing, malformed or invalid (exit 78, EX_CONFIG)."""


class CameraError(LinegateError):
    """The camera or GenTL producer refused, failed or could not be found."""


class EngineError(LinegateError):
    """The inference engine could not be loaded or run."""


class ModelError(EngineError, ConfigError):
    """The model cannot serve this configuration: unreadable, not a model for its backend, inputs
    or outputs that do not fit the preprocessing, or a backend not installed. No restart fixes it
    (exit 78)."""


class RingClosed(LinegateError):
    """The frame ring was closed while waiting on it."""


class CameraSettingError(CameraError, ConfigError):
    """The camera refused a configured setting: fix the configuration (exit 78), do not restart."""
