"""unigen: deep generative models as graphical-model specs, compiled into training phases.

The pipeline: `load_spec` -> `build_graph` -> `validate_graph` -> `compile_program` -> `Trainer`.
Families, terms, networks, distributions, datasets and metrics come from pluggy plugins.
"""

from unigen.api.hookspecs import PLUGIN_API, hookimpl
from unigen.errors import Diagnostic, UnigenError

__version__ = "0.1.0"

__all__ = ["Diagnostic", "UnigenError", "PLUGIN_API", "hookimpl", "__version__"]
