"""`unigen completion SHELL`: a completion script generated from the parser, which completes
the commands and their options in a real bash."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from unigen.cli import main


def script(capsys, shell: str) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def complete(bash_script: str, words: list[str], tmp_path) -> list[str]:
    """What bash offers for the last word of `words` with the script loaded."""
    (tmp_path / "unigen.bash").write_text(bash_script)
    line = " ".join(words)
    probe = f"""
source {tmp_path / 'unigen.bash'}
COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}
_shtab_unigen unigen "{words[-1]}" "{words[-2]}"
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_bash_completes_commands_and_their_options(capsys, tmp_path):
    text = script(capsys, "bash")
    offered = complete(text, ["unigen", "comp"], tmp_path)
    assert {"compile", "compile-and-train", "completion"} <= set(offered) and all(w.startswith("comp") for w in offered)
    options = complete(text, ["unigen", "compile-and-train", "--re"], tmp_path)
    assert options == ["--resume"]
    assert "--metric" in complete(text, ["unigen", "evaluate", "--me"], tmp_path)
    assert set(complete(text, ["unigen", "completion", ""], tmp_path)) == {"bash", "zsh", "tcsh"}


def test_zsh_and_tcsh_scripts_name_every_command(capsys):
    for shell in ("zsh", "tcsh"):
        text = script(capsys, shell)
        for command in ("compile-and-train", "validate", "evaluate", "sample", "plot", "completion"):
            assert command in text, (shell, command)


def test_an_unknown_shell_is_refused_with_the_choices(capsys):
    assert main_exit(["completion", "fish-and-chips"]) == 2
    err = capsys.readouterr().err
    assert "S005" in err and "bash" in err and "zsh" in err


def main_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return int(exc.value.code)
