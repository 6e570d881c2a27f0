"""The README cannot drift from the CLI: each command it shows is one `tdsync` accepts, each option
of `tdsync` is in it, and the blocks marked `<!-- tested -->` run as shown, in order, on a
throwaway home and a real SQLite file."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tdsync.cli.main import _parser

README = Path(__file__).parents[1] / "README.md"
MARK = "<!-- tested -->"


@dataclass(frozen=True)
class Block:
    tested: bool
    commands: list[str]


def console_blocks(text: str) -> list[Block]:
    """Every ```console block: its `$ ` lines, and whether the line before it is the mark."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```console":
            tested = i > 0 and lines[i - 1].strip() == MARK
            end = lines.index("```", i + 1)
            commands = [line[2:] for line in lines[i + 1 : end] if line.startswith("$ ")]
            blocks.append(Block(tested=tested, commands=commands))
            i = end
        i += 1
    return blocks


def tdsync_argv(command: str) -> list[str] | None:
    words = shlex.split(command, comments=True)
    if words and words[0] in ("tdsync", ".venv/bin/tdsync"):
        return words[1:]
    return None


def shown_commands() -> list[list[str]]:
    text = README.read_text()
    found = [tdsync_argv(c) for block in console_blocks(text) for c in block.commands]
    return [argv for argv in found if argv is not None]


def test_the_readme_shows_tested_blocks_and_tdsync_commands():
    blocks = console_blocks(README.read_text())

    assert sum(block.tested for block in blocks) >= 2
    assert len(shown_commands()) >= 20


@pytest.mark.parametrize("argv", shown_commands(), ids=shlex.join)
def test_every_command_the_readme_shows_is_accepted_by_the_cli(argv: list[str]):
    parser = _parser()
    for _, sub in [("tdsync", parser), *subcommands(parser)]:
        sub.allow_abbrev = False  # the README must spell each option out
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        assert exc.code == 0, f"`tdsync {shlex.join(argv)}` is refused by the CLI"
        return
    assert getattr(args, "func", None), f"`tdsync {shlex.join(argv)}` names no command"


def subcommands(parser: argparse.ArgumentParser, prefix: str = "tdsync"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from subcommands(sub, f"{prefix} {name}")


def test_every_command_and_option_of_the_cli_is_in_the_readme():
    text = README.read_text()
    missing = []
    for command, parser in subcommands(_parser()):
        if command not in text:
            missing.append(command)
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in text:
                    missing.append(f"{command} {option}")
    assert missing == []


def test_the_tested_blocks_run_as_shown(tdsync_env, tmp_path: Path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "NO_COLOR": "1",
    }
    commands = [c for b in console_blocks(README.read_text()) if b.tested for c in b.commands]

    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        comment = command.partition("  #")[2].strip()
        expected = re.match(r"exits (\d+):?\s*", comment)
        code = int(expected.group(1)) if expected else 0
        output = done.stdout + done.stderr
        assert done.returncode == code, f"$ {command}\n{output}"
        # What the README says a command prints is what it prints.
        said = comment[expected.end() :] if expected else comment
        assert said.rstrip(" …") in output, f"$ {command}\n{output}"
