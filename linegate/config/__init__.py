"""Configuration: TOML in, typed immutable objects out."""

from linegate.config.loader import load_config, parse_config
from linegate.config.schema import BUILTIN_VIKY, Config

__all__ = ["BUILTIN_VIKY", "Config", "load_config", "parse_config"]
