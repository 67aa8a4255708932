"""The progress line: redrawn in place on a terminal and never wider than it, with an ETA; log
lines elsewhere."""

from __future__ import annotations

import io
import re

from unigen.runs.progress import Progress, duration


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


LOSSES = {"discriminator/adversarial.d@adv_x": 1.3862, "generator/adversarial.g@adv_x": 0.6931, "encoder/elbo": 17.5}


def test_on_a_terminal_the_bar_is_redrawn_in_place_within_the_width():
    for columns in (40, 80, 200):
        out, logged = Terminal(), []
        progress = Progress(1000, logged.append, stream=out, columns=lambda c=columns: c)
        for step in (100, 200, 500, 1000):
            progress.update(step, LOSSES)
        progress.close()
        text = out.getvalue()
        assert text.count("\n") == 1 and text.endswith("\n")  # one line, ended once
        draws = [d.removesuffix("\x1b[K") for d in text.rstrip("\n").split("\r")[1:]]
        assert len(draws) == 4
        assert all(len(d) <= columns - 1 for d in draws), [len(d) for d in draws]
        assert all("ETA" in d and "it/s" in d for d in draws)
        assert draws[-1].startswith("[##") or columns < 60
        assert "1000/1000" in draws[-1] and "ETA 0s" in draws[-1]
        assert all("ETA" in line for line in logged) and len(logged) == 4
    wide = out.getvalue()
    assert "encoder/elbo=17.5" in wide  # at 200 columns every loss fits


def test_elsewhere_each_update_is_a_log_line_with_the_time_left():
    out, logged = io.StringIO(), []
    progress = Progress(10, logged.append, stream=out)
    progress.update(5, {"elbo": 2.0})
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"step 5/10  elbo=2  [0-9.]+ it/s  ETA \S+", lines[0])
    quiet = io.StringIO()
    Progress(10, logged.append, stream=quiet, quiet=True).update(5, {"elbo": 2.0})
    assert quiet.getvalue() == ""


def test_durations_read_as_a_person_reads_them():
    assert [duration(s) for s in (0, 7.4, 65, 3723)] == ["0s", "7s", "1:05", "1:02:03"]
