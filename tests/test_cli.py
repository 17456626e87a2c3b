"""The command line as a user meets it: help for people, documented exit codes, --version, clear option errors."""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys

import pytest

from linegate.cli import build_parser


def linegate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linegate", *args], capture_output=True, text=True, timeout=60)


def test_version_prints_the_installed_package_version() -> None:
    """`linegate --version` prints 'linegate X.Y.Z', the version pip installed."""
    done = linegate("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"linegate {importlib.metadata.version('linegate')}"


def test_top_level_help_describes_linegate_and_lists_every_exit_code() -> None:
    """`linegate --help` says what linegate is (not a developer docstring) and what 0, 1, 2 and 78 mean."""
    done = linegate("--help")
    assert done.returncode == 0
    out = done.stdout
    assert "Command line:" not in out and "maps errors" not in out
    assert "systemd service `linegate`" in out
    assert "exit codes:" in out
    for code, meaning in (("0", "clean stop"), ("1", "runtime failure"), ("2", "wrong command line"),
                          ("78", "configuration error")):
        assert any(line.split()[:1] == [code] and meaning in line for line in out.splitlines()), (code, out)
    assert "systemd does not restart it" in out


@pytest.mark.parametrize("command", ["run", "demo", "check-config"])
def test_command_help_ends_with_the_exit_codes(command: str) -> None:
    """`linegate COMMAND --help` lists the exit codes too, 78 with what to do about it."""
    done = linegate(command, "--help")
    assert done.returncode == 0 and "exit codes:" in done.stdout and "78  configuration error" in done.stdout


def _options(parser: argparse.ArgumentParser, path: str = "linegate") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{path} {name}")
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            found.append((f"{path} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def test_every_option_has_help_and_states_its_default() -> None:
    """Every option and argument of every command has help text; an option with a default names it."""
    for name, action in _options(build_parser()):
        assert action.help, f"{name} has no help text"
        if action.option_strings and action.default not in (None, False, []) and not action.required:
            assert "default" in action.help, f"{name}: help does not state the default"


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_bad_max_frames_names_the_option_and_what_is_expected(value: str) -> None:
    """`--max-frames abc` (or 0, -3, 1.5): exit 2 naming --max-frames and 'a whole number of frames (1 or more)'."""
    done = linegate("demo", "--max-frames", value)
    assert done.returncode == 2
    assert "argument --max-frames: expected a whole number of frames (1 or more)" in done.stderr
    assert "_positive" not in done.stderr and "invalid" not in done.stderr


def test_bad_number_for_plc_sim_names_the_option() -> None:
    """A non-number for a plc-sim option: exit 2 naming the option and that a whole number is expected."""
    done = linegate("plc-sim", "--db", "ten")
    assert done.returncode == 2 and "argument --db: expected a whole number, got 'ten'" in done.stderr


@pytest.mark.parametrize("command", [["plc-interface"], ["status", "--instance", "nosuchinstance"]])
def test_a_reader_that_closed_early_ends_the_command_quietly(command: list[str]) -> None:
    """`linegate status | head -2`: the reader is gone before the output is written; the command ends
    without a traceback (a real pipe whose read end is closed)."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "linegate", *command],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode in (1, 3), done.stderr  # 3: status of an instance that is not running
