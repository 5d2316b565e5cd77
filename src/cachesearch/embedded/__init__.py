"""The embedded models: small diffusion pipelines trained from scratch, shipped with their weights, with
procedural ground truth (a data generator, a checker that scores an image against its caption, a quality gate).

- :mod:`cachesearch.embedded.shapes` (``embedded:shapes``, the default): 32 px, one shape, SD-style UNet;
- :mod:`cachesearch.embedded.scenes` (``embedded:scenes``): 64 px, two textured objects on a gradient, UNet;
- :mod:`cachesearch.embedded.shapes_flux` (``embedded:shapes-flux``): the ``scenes`` data, a FLUX transformer.

Each package holds its components (architecture configs), its shipped ``pipeline/`` folder, its data
generator, checker and gate; the scripts that trained the weights live outside the package, in the
repository's ``training/`` folder. The model loaders (:mod:`cachesearch.models`) find a package by name in
:data:`EMBEDDED_PACKAGES`. Importing this package imports none of the models (nor torch or diffusers).
"""

from __future__ import annotations

from ._registry import DEFAULT_EMBEDDED, EMBEDDED_PACKAGES, embedded_name, embedded_package, load_folder

__all__ = ["DEFAULT_EMBEDDED", "EMBEDDED_PACKAGES", "embedded_name", "embedded_package", "load_folder"]
