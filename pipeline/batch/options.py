"""``hallo-render``'s options, reused as jobs-file columns and as ``hallo-batch`` defaults.

One source of truth: the option names, types, choices and checks are those of ``hallo-render``'s parser
(``pipeline/cli.py``). Its actions are copied into ``hallo-batch``'s parser (defaults for every row) and into
a row parser that reads one row's cells. A row's options are layered: built-in defaults, then a ComfyUI
workflow's settings (``--from-workflow``), then the command line, then the row's own cells.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from .. import cli as render_cli

# hallo-render options that are not per-job options: the paths are columns of their own, the model folder is
# loaded once for the whole batch, and the rest belong to hallo-render alone.
NOT_JOB_OPTIONS = frozenset({"help", "image", "audio", "out", "models", "make_tiny_models", "landmarker_task",
                             "quiet"})
#: The columns every row needs.
PATH_COLUMNS = ("image", "audio", "out")
TRUE = frozenset({"1", "true", "yes", "on", "y"})
FALSE = frozenset({"0", "false", "no", "off", "n"})


class OptionError(ValueError):
    """A cell or a command-line default that ``hallo-render`` would refuse; the message names the fix."""


def _render_parser() -> argparse.ArgumentParser:
    parser = render_cli.build_parser()
    parser.exit_on_error = False  # argument errors raise argparse.ArgumentError instead of exiting
    return parser


def job_actions(parser: argparse.ArgumentParser | None = None) -> list[argparse.Action]:
    """The actions of ``hallo-render``'s parser that are per-job options."""
    parser = parser or _render_parser()
    return [a for a in parser._actions if a.option_strings and a.dest not in NOT_JOB_OPTIONS]  # noqa: SLF001


def add_job_options(group: argparse._ActionsContainer) -> None:
    """Add every per-job option of ``hallo-render`` (same names, types, choices and help) to ``group``."""
    for action in job_actions():
        group._add_action(action)  # noqa: SLF001 - the same Action objects: one definition of each option


def _flag(action: argparse.Action) -> bool:
    return isinstance(action, argparse._StoreTrueAction)  # noqa: SLF001


def _long_option(action: argparse.Action) -> str:
    return max(action.option_strings, key=len)


class RowParser:
    """Reads job options (a row's cells or a workflow's settings) with ``hallo-render``'s own parser."""

    def __init__(self) -> None:
        self.parser = _render_parser()
        self.actions = {a.dest: a for a in job_actions(self.parser)}

    def column(self, name: str) -> str | None:
        """The option a column names (``lip_weight`` or ``lip-weight``), or None."""
        dest = name.strip().replace("-", "_")
        return dest if dest in self.actions else None

    def known_columns(self) -> list[str]:
        return [*PATH_COLUMNS, *sorted(self.actions)]

    def parse(self, cells: Mapping[str, Any], base: argparse.Namespace | None = None) -> argparse.Namespace:
        """``base`` (or the built-in defaults) with ``cells`` ({dest: value}) applied; raises OptionError."""
        namespace = argparse.Namespace(**vars(base)) if base is not None else argparse.Namespace()
        tokens: list[str] = []
        flags: dict[str, bool] = {}
        for dest, value in cells.items():
            action = self.actions[dest]
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # an empty cell keeps the default
            if _flag(action):
                flags[dest] = _boolean(value, dest)
            else:
                tokens.append(f"{_long_option(action)}={_text(value, action)}")
        try:
            self.parser.parse_args(tokens, namespace=namespace)
        except argparse.ArgumentError as exc:
            raise OptionError(_argument_message(exc)) from None
        for dest, value in flags.items():
            setattr(namespace, dest, value)
        if "size" in cells and not {"width", "height"} & set(cells):
            namespace.width = namespace.height = None  # a size given here replaces a lower layer's width/height
        return namespace

    def defaults(self) -> argparse.Namespace:
        return self.parse({})


def _boolean(value: Any, dest: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise OptionError(f"{value!r} is not true or false")


def _text(value: Any, action: argparse.Action) -> str:
    """A cell as the text hallo-render would get on its command line (JSON true on --compile means --compile)."""
    if isinstance(value, bool):
        if action.nargs == "?" and action.const is not None:
            return str(action.const if value else action.default)
        raise OptionError(f"{value!r} is not a value for {_long_option(action)}")
    whole = (int, render_cli.positive_int, render_cli.seed_int, render_cli.index_int, render_cli.steps_int,
             render_cli.side_int)
    if isinstance(value, float) and value.is_integer() and action.type in whole:
        return str(int(value))
    return str(value).strip()


def _argument_message(exc: argparse.ArgumentError) -> str:
    """argparse's message without its ``argument --seed:`` prefix (the row's report names the column)."""
    return exc.message


def render_options(namespace: argparse.Namespace):
    """The ``RenderOptions`` hallo-render makes of these options (its own checks: presets, schedules, ...)."""
    return render_cli._options(namespace)  # noqa: SLF001 - hallo-render's own option resolution


def namespace_to_dict(namespace: argparse.Namespace) -> dict[str, Any]:
    """The per-job options as plain JSON values (what travels to a worker)."""
    return {k: v for k, v in vars(namespace).items() if k not in NOT_JOB_OPTIONS}
