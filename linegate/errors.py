"""Exceptions that cross module boundaries; only the CLI maps them to exit codes."""


class LinegateError(Exception):
    """Base class for errors linegate reports to the user."""


class ConfigError(LinegateError):
    """The configuration file is missing, malformed or invalid (exit 78, EX_CONFIG)."""


class CameraError(LinegateError):
    """The camera or GenTL producer refused, failed or could not be found."""


class EngineError(LinegateError):
    """The inference engine could not be loaded or run."""


class RingClosed(LinegateError):
    """The frame ring was closed while waiting on it."""


class CameraSettingError(CameraError, ConfigError):
    """The camera refused a configured setting: fix the configuration (exit 78), do not restart."""
