"""Every command and every option of the command line says what it does in `--help`."""

from __future__ import annotations

import argparse

from unigen.cli.commands import build_parser


def undocumented(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("unigen",)) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not helps.get(name):
                    missing.append(" ".join((*path, name)) + " (the command)")
                missing += undocumented(child, (*path, name))
        elif not action.help and not isinstance(action, argparse._HelpAction):
            missing.append(" ".join(path) + " " + ("/".join(action.option_strings) or action.dest))
    return missing


def test_every_command_and_option_has_help_text():
    parser = build_parser()
    assert not undocumented(parser)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"compile-and-train", "validate", "evaluate", "sample", "plot", "completion"} <= set(commands)


def test_sample_and_evaluate_default_to_the_device_training_defaults_to():
    from unigen.spec.models import Train

    parser = build_parser()
    default = Train.model_fields["device"].default
    for command in (["evaluate", "RUN"], ["sample", "RUN", "-o", "x.png"]):
        assert parser.parse_args(command).device == default == "auto"
