"""Command-line behaviour a user hits first (issue 19): closed pipes, help text, columns."""

from __future__ import annotations

import io

import pytest

from archbench.cli import build_parser, main
from archbench.registry import FAMILIES


class _ClosedPipe(io.StringIO):
    """stdout of ``archbench ... | head -1`` after ``head`` exited."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def fileno(self) -> int:  # never let the handler redirect pytest's real stdout
        raise io.UnsupportedOperation("no fileno")


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 19: the BrokenPipeError handler sat after a broader `except Exception`, which
    # re-raised it: `archbench stats ... | head -1` (stats prints with print()) ended in a
    # traceback. Any command that prints plainly stands in for stats here.
    import archbench.cli.catalog as catalog

    def prints(args: object) -> int:
        print("facts " * 100)
        return 0

    monkeypatch.setattr(catalog, "cmd_families", prints)
    monkeypatch.setattr("sys.stdout", _ClosedPipe())
    assert main(["families"]) == 0


def test_help_texts_show_single_percent_signs() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command in sub.choices.items():
        text = command.format_help()
        assert "%%" not in text, name


def test_families_show_their_package(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["families"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert "package" in header
    for name in FAMILIES.names():
        row = next(line for line in lines[2:] if line.split() and line.split()[0] == name)
        assert FAMILIES.entry(name).source in row.split()
