"""The command-line option of each RunConfig field, built from its declaration
(:func:`gradviz.config.settings`: help, limits, group, choices), for ``gradviz run``
(:mod:`gradviz.cli`). A mistake in an option ends with exit status 2 and one line that
names the option and what it allows.
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from gradviz.cliprep import option_name
from gradviz.config import Setting, settings

EXIT_USAGE = 2
HELP_WIDTH = 79  # of the --help epilog, which argparse does not wrap


def _int_type(s: Setting):
    def parse(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; {s.allowed}") \
                from None
    return parse


def _float_type(s: Setting):
    def parse(text: str) -> float | None:
        if s.optional and text.lower() == "none":
            return None
        try:
            return float(text)
        except ValueError:
            extra = " or 'none'" if s.optional else ""
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; {s.allowed}{extra}") \
                from None
    return parse


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        message = message.removeprefix("argument ")
        if "allowed:" not in message:
            message += f"; see '{self.prog} --help'"
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")

    def print_help(self, file=None):
        # The registry's help texts have symbols (⊙, √, ±) that a Windows pipe's code page
        # may lack; there they become '?' rather than a UnicodeEncodeError.
        file = file or sys.stdout
        encoding = getattr(file, "encoding", None) or "utf-8"
        file.write(self.format_help().encode(encoding, "replace").decode(encoding))


def add_option(group, name: str, s: Setting) -> None:
    """The option of one RunConfig field, absent from the namespace unless given."""
    flag, default = option_name(name), "none" if s.default is None else s.default
    if s.choices is not None:
        group.add_argument(flag, metavar="{" + ",".join(s.choices) + "}",
                           help=f"{s.help} (default {default})")
    elif s.value_type is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, help=s.help)
    elif s.value_type is int:
        group.add_argument(flag, type=_int_type(s), metavar="N",
                           help=f"{s.help} ({s.allowed}; default {default})")
    elif s.value_type is float:
        group.add_argument(flag, type=_float_type(s), metavar="X",
                           help=f"{s.help} ({s.allowed}; default {default})")
    else:
        group.add_argument(flag, metavar="PATH" if name.endswith("_file") else "NAME",
                           help=s.help)


def choices_text() -> str:
    """The --help epilog: what each registered value of the name-valued options means
    (those whose values all explain themselves, like float64, are left out)."""
    lines = ["values:"]
    for name, s in settings():
        if s.choices is None or not any(c.help for c in s.choices.values()):
            continue
        lines.append(f"  {option_name(name)}")
        width = max(len(c) for c in s.choices) + 6
        for c in s.choices.values():
            lines.append(textwrap.fill(c.help or c.label, HELP_WIDTH,
                                       initial_indent=f"    {c.name:<{width - 4}}",
                                       subsequent_indent=" " * width))
    return "\n".join(lines)


__all__ = ["EXIT_USAGE", "Parser", "add_option", "choices_text", "option_name"]
