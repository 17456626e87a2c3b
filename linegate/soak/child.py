"""``python -m linegate.soak.child``: ``linegate run`` (its own code path, as the service runs it) with the
PLC peer moved to a local port and/or another instance name: what a soak of the demo needs, whose
PLC simulator listens on a free port. The configuration file itself is not changed (so a SIGHUP
reload would read it without these overrides; the soak never sends one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linegate.config import Config, load_config
from linegate.errors import ConfigError, LinegateError
from linegate.service.instance_lock import InstanceLocked


def overridden(cfg: Config, plc_port: int | None, instance: str | None) -> Config:
    """*cfg* with the PLC at 127.0.0.1:*plc_port* and the instance named *instance* (None: unchanged)."""
    from linegate.demo.runner import with_plc_port

    if plc_port is not None:
        cfg = with_plc_port(cfg, plc_port)
    if instance is not None:
        cfg = cfg.model_copy(update={"instance": cfg.instance.model_copy(update={"name": instance})})
    return cfg


def main(argv: list[str] | None = None) -> int:
    from linegate.cli import EX_CONFIG, EX_FAILED, _run

    parser = argparse.ArgumentParser(prog="python -m linegate.soak.child")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--plc-port", type=int, default=None)
    parser.add_argument("--instance", default=None)
    args = parser.parse_args(argv)
    try:  # the same mapping of errors to exit codes as linegate.cli.main
        cfg = overridden(load_config(args.config), args.plc_port, args.instance)
        return _run(cfg, args.config, None, args.log_file)
    except InstanceLocked as exc:
        print(f"linegate: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ConfigError as exc:
        print(f"linegate: configuration error:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    except LinegateError as exc:
        print(f"linegate: {exc}", file=sys.stderr)
        return EX_FAILED


def command(config: Path, log_file: Path, plc_port: int | None = None, instance: str | None = None) -> list[str]:
    """The command line of the run: ``linegate run`` itself when nothing is overridden."""
    base = ["--config", str(config), "--log-file", str(log_file)]
    if plc_port is None and instance is None:
        return [sys.executable, "-m", "linegate", "run", *base]
    extra = [*(["--plc-port", str(plc_port)] if plc_port is not None else []),
             *(["--instance", instance] if instance is not None else [])]
    return [sys.executable, "-m", "linegate.soak.child", *base, *extra]


if __name__ == "__main__":
    raise SystemExit(main())
