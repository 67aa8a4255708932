"""The built-in TensorBoard tracker (`--tensorboard`), and what the other trackers share with it
(`trackers_mlflow`: `--track mlflow`, `trackers_wandb`: `--track wandb`): the names of a
row's values and the resolved spec as flat keys. metrics.csv is the core's own file.

What a run shows there, in RUN/tensorboard (one run, no sub-runs):

- scalars, one event per logged step: `loss/<phase>/<term>` (each term's mean over the logging
  window), `lr/<phase>`, `metric/<name>` (evaluation metrics), `time/seconds` (training time);
- text: `spec/resolved` (the resolved spec, as spec.resolved.yaml) and, at the end, `summary`;
- images: `samples`, each sample picture the run writes (samples/step_*.png), at its step;
- HParams: the resolved spec's scalar values flattened (`train.batch_size`,
  `networks.generator.hidden`, `phases.discriminator.optim.lr`, ...), with the final
  `metric/<name>` values as the session's metrics.
"""

from __future__ import annotations

import importlib.util
import json
import math
import numbers
from pathlib import Path
from typing import Any

from unigen.runs.rundir import dump_yaml
from unigen.runs.trackers import RunStart, Tracker

MAX_HPARAM_TEXT = 200  # a list longer than this as text is not a hyperparameter worth a column


def scalar_tag(key: str, phases: set[str]) -> str | None:
    """The TensorBoard tag of a row's key: `lr/<phase>` as it is, `<phase>/<term>` under
    `loss/`, `time_s` as `time/seconds`, any other number (a metric) under `metric/`."""
    if key == "step":
        return None
    if key == "time_s":
        return "time/seconds"
    if key.startswith("lr/") and key[3:] in phases:
        return key
    if key.split("/", 1)[0] in phases and "/" in key:
        return f"loss/{key}"
    return f"metric/{key}"


def flat_spec(resolved: dict[str, Any]) -> dict[str, Any]:
    """The resolved spec's leaves under dotted keys: the items of a list of mappings by their
    `name` when each has its own (phases), else by index (edges); any other list (e.g.
    `hidden`) and every scalar, None included, as it is. Empty mappings have no leaf."""
    out: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            names = [v.get("name") for v in value]
            if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
                for n, v in zip(names, value):
                    walk(f"{prefix}.{n}", {a: b for a, b in v.items() if a != "name"})
            else:
                for i, v in enumerate(value):
                    walk(f"{prefix}.{i}", v)
        else:
            out[prefix] = value

    walk("", resolved)
    return out


def flat_hparams(resolved: dict[str, Any]) -> dict[str, bool | int | float | str]:
    """The resolved spec's scalar values as HParams (keys as `flat_spec` gives them); a short
    list of scalars (e.g. `hidden`) as its JSON text; None and non-finite numbers left out."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in flat_spec(resolved).items():
        if isinstance(value, list):
            text = json.dumps(value)
            if all(isinstance(v, (str, numbers.Real)) for v in value) and len(text) <= MAX_HPARAM_TEXT:
                out[key] = text
        elif isinstance(value, (bool, str, int)):
            out[key] = value
        elif isinstance(value, numbers.Real) and math.isfinite(value):
            out[key] = float(value)
    return out


def png_summary(tag: str, png: bytes) -> Any:
    """An image summary holding a PNG's bytes as they are (its size read from its header)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(png[25], 3)
    return Summary(value=[Summary.Value(tag=tag, image=Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png))])


def picture_layout(shape: tuple[int, ...]) -> str:
    """How an array picture's axes are laid out: HW; HWC when its last axis has 1, 3 or 4 entries; else CHW."""
    return "HW" if len(shape) == 2 else "HWC" if shape[-1] in (1, 3, 4) else "CHW"


def picture_pixels(image: Any) -> Any:
    """An array picture as 8-bit HWC pixels (HW for one channel): floats are taken in [0, 1],
    integers in [0, 255], both clipped."""
    import numpy as np

    array = np.asarray(image)
    layout = picture_layout(array.shape)
    if layout == "CHW":
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        array = np.nan_to_num(array, nan=0.0) * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def picture_png(image: Any) -> bytes:
    """An array picture (see `picture_pixels`) as PNG bytes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture_pixels(image)).save(buffer, format="PNG")
    return buffer.getvalue()


class TensorBoardTracker(Tracker):
    doc = "TensorBoard event files in RUN/tensorboard (losses, learning rates, metrics, the spec, HParams, sample pictures; needs the `tensorboard` package)"

    def __init__(self) -> None:
        self.writer: Any = None
        self.phases: set[str] = set()
        self.hparams: dict[str, Any] = {}
        self.step = 0

    @classmethod
    def unavailable(cls) -> str:
        if importlib.util.find_spec("tensorboard") is None:
            return "`--tensorboard` needs the `tensorboard` package, which is not installed (`pip install tensorboard`)"
        return ""

    def on_start(self, start: RunStart) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        resolved = start.resolved
        self.phases = {str(p.get("name")) for p in resolved.get("phases") or [] if isinstance(p, dict)}
        self.step = start.first_step
        # A continued run keeps the events up to its checkpoint's step and replays later ones;
        # one resumed at its last step (to finish again) writes that step's row anew.
        last = int((resolved.get("train") or {}).get("steps") or 0)
        purge = (start.first_step if start.first_step >= last else start.first_step + 1) if start.resumed else None
        self.writer = SummaryWriter(log_dir=str(start.run / "tensorboard"), purge_step=purge)
        self.text("spec/resolved", f"```yaml\n{dump_yaml(resolved)}```", start.first_step)
        self.hparams = flat_hparams(resolved)
        if not start.resumed:  # the HParams session starts once; its end info comes with the final metrics
            _, session_start, _ = hparams(self.hparams, {})
            self.writer._get_file_writer().add_summary(session_start, start.first_step)
        self.writer.flush()

    def text(self, tag: str, markdown: str, step: int) -> None:
        """A text event under `tag` itself (`add_text` would make it `tag/text_summary`)."""
        from tensorboard.plugins.text.summary_v2 import text_pb

        self.writer._get_file_writer().add_summary(text_pb(tag, markdown), step)

    def on_metrics(self, step: int, row: dict[str, Any]) -> None:
        for key, value in row.items():
            tag = scalar_tag(key, self.phases)
            if tag is not None and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(tag, float(value), step)
        self.step = step
        self.writer.flush()

    def on_image(self, tag: str, image: Any, step: int) -> None:
        if isinstance(image, (str, Path)):
            self.writer._get_file_writer().add_summary(png_summary(tag, Path(image).read_bytes()), step)
        else:
            self.writer.add_image(tag, image, step, dataformats=picture_layout(tuple(getattr(image, "shape", ()))))
        self.writer.flush()

    def on_end(self, summary: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        step = int(summary.get("steps", self.step))
        metrics = summary.get("metrics", {})
        # The session's metrics are the `metric/<name>` scalars, whose last values are the final ones.
        experiment, _, session_end = hparams(self.hparams, {scalar_tag(k, self.phases): v for k, v in metrics.items()})
        writer = self.writer._get_file_writer()
        writer.add_summary(experiment, step)
        writer.add_summary(session_end, step)
        self.text("summary", "\n".join(f"- {k}: {v}" for k, v in metrics.items()) or "(no metrics)", step)
        self.writer.close()
