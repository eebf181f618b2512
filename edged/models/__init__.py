"""The emotion model edged ships: `emotions-int8.tflite` and its sidecar `emotions-int8.json`, package data here.

Made by `quantize convert` (how: models/README.md at the top of the repository); a wheel, an sdist and an
editable install all carry them, and edged finds them with importlib.resources, never relative to the working
directory.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from edged.errors import ModelError

DEFAULT_MODEL_NAME = "emotions-int8.tflite"


def default_model() -> Path:
    """The bundled model's path (site-packages for an installed wheel, the checkout for an editable install).

    ModelError when the package is imported from a zip, where the interpreter could not open it as a file.
    """
    resource = importlib.resources.files(__name__) / DEFAULT_MODEL_NAME
    if not isinstance(resource, Path):
        raise ModelError(f"the bundled model {resource} is not a plain file; set EDGED_MODEL__PATH")
    return resource
