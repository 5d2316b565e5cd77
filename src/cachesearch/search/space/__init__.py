"""Search spaces as data: ``cachesearch/space@1`` files (:mod:`.file`), their parameters (:mod:`.params`), one
module per policy family (:mod:`.families`), and the space tied to a model (:mod:`.resolved`), whose
:meth:`~ResolvedSpace.suggest` maps a trial to a policy as a pure function of the trial's parameters, so any
trial replays exactly with ``optuna.trial.FixedTrial(trial.params)``.
"""

from .context import TRANSFORMER_FAMILIES, SpaceContext, is_transformer
from .families import Family, MaskFamily, mask_families, register
from .file import (
    DEFAULT_SPACE,
    DEFAULT_TRANSFORMER_SPACE,
    SPACE_FORMAT,
    SearchSpace,
    builtin_space_names,
    default_space,
    drop_unavailable,
    find_space,
    load_space,
    parse_space,
)
from .params import SpaceError
from .resolved import ResolvedSpace

__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_TRANSFORMER_SPACE",
    "SPACE_FORMAT",
    "Family",
    "MaskFamily",
    "ResolvedSpace",
    "SearchSpace",
    "SpaceContext",
    "SpaceError",
    "TRANSFORMER_FAMILIES",
    "builtin_space_names",
    "default_space",
    "drop_unavailable",
    "find_space",
    "is_transformer",
    "load_space",
    "mask_families",
    "parse_space",
    "register",
]
