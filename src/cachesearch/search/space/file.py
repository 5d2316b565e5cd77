"""Space files: load and validate ``cachesearch/space@1`` YAML, find the shipped spaces, the default space.

A space file lists which policy families a study may propose and the range of every parameter (format in
``docs/search-spaces.md``); each family parses its own section (:mod:`.families`). :func:`load_space` validates
the file on its own; :meth:`SearchSpace.resolve` then checks it against one model and sampler.

The shipped spaces are the repository's top-level ``search_spaces/*.yaml``; the package reaches them through
``cachesearch/search/spaces``, a link to that folder that a wheel stores as a plain folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...schedule import BlockSpace, ScheduleError
from ...schedule._yaml import parse_untrusted_yaml, read_untrusted_text, strict_yaml_load
from .context import SpaceContext, is_transformer
from .families import Family, MaskFamily, RuntimeFamily, Steps, baseline_families, mask_families
from .params import Fields, SpaceError
from .resolved import ResolvedSpace

__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_TRANSFORMER_SPACE",
    "SPACE_FORMAT",
    "SearchSpace",
    "builtin_space_names",
    "default_space",
    "drop_unavailable",
    "find_space",
    "load_space",
    "parse_space",
]

SPACE_FORMAT = "cachesearch/space@1"
DEFAULT_SPACE = "joint"
"""The default space of a UNet (any denoiser that is not a stack of transformer blocks)."""
DEFAULT_TRANSFORMER_SPACE = "dit"
"""The default space of a transformer denoiser (:func:`~.context.is_transformer`: FLUX, SD3, PixArt)."""
SHIPPED_SPACES = Path(__file__).resolve().parents[1] / "spaces"


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file, not yet tied to a model (see :meth:`resolve`).

    Attributes:
        families: the mask families of ``mask.families`` in file order (the choices of ``mask.family``).
        baselines: the baseline kinds (family names) to enqueue.
        baseline_options: per kind, the grid the file gives (``{"deepcache": {"intervals": [2, 3]}}``).
        steps: the step-set family, if the file has a ``steps`` section.
        masks: the listed mask families by name, in registration (suggestion) order.
        scale_shift: ``mask.scale_shift``: the choices of a trial whose family caches (``off`` first when listed;
            ``lstsq``/``distill`` fit Block Caching's scale-shift on the train prompts inside the trial).
        cfg: ``mask.cfg``: ``shared`` (one mask for both guidance branches) and/or ``uncond`` (the family's mask
            on the unconditional branch only; the conditional one recomputes), ``shared`` first when listed.
    """

    name: str
    description: str
    source: str
    text: str
    families: tuple[str, ...]
    baselines: tuple[str, ...]
    baseline_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    steps: Steps | None = None
    masks: Mapping[str, MaskFamily] = field(default_factory=dict)
    scale_shift: tuple[str, ...] = ("off",)
    cfg: tuple[str, ...] = ("shared",)

    @property
    def digest(self) -> str:
        """``sha256:`` of the file text: a resumed study refuses a space whose text changed."""
        return "sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        """How files written from this space name it: ``search_spaces/<name>.yaml`` for a shipped space, else
        its source as given (never an absolute path of this machine: results stay relocatable)."""
        p = Path(self.source)
        try:
            shipped = p.resolve().parent == SHIPPED_SPACES.resolve()
        except OSError:
            shipped = False
        if shipped:
            return f"search_spaces/{p.name}"
        if p.is_absolute():
            try:
                return str(p.resolve().relative_to(Path.cwd().resolve()))
            except ValueError:
                return f"space {self.name!r} ({p.name})"
        return str(p)

    def family(self, kind: str) -> Family:
        """The family of a baseline kind or mask family name."""
        if kind == Steps.name and self.steps is not None:
            return self.steps
        return self.masks[kind]

    def baseline_grid(self, kind: str) -> tuple[Any, ...] | None:
        """The grid the file gives baselines of ``kind`` (None: the family's defaults)."""
        grid = baseline_families()[kind].grid
        values = self.baseline_options.get(kind, {}).get(grid.key) if grid is not None else None
        return tuple(values) if values else None

    def resolve(self, ctx: SpaceContext) -> ResolvedSpace:
        """Tie the space to a model and sampler: resolve symbols, check ranges and blocks (raises SpaceError)."""
        return ResolvedSpace(self, ctx)

    def without(self, names: Sequence[str], why: str) -> SearchSpace:
        """This space without the mask families ``names`` (and their sections and baselines)."""
        data = strict_yaml_load(self.text)
        mask = data["mask"]
        mask["families"] = [f for f in mask["families"] if f not in names]
        for n in names:
            mask.pop(n, None)
        if isinstance(data.get("baselines"), Mapping):
            data["baselines"] = {k: v for k, v in data["baselines"].items() if k not in names}
        elif isinstance(data.get("baselines"), list):
            data["baselines"] = [k for k in data["baselines"] if k not in names]
        text = f"# {self.label} without {', '.join(names)}: {why}\n" + yaml.safe_dump(data, sort_keys=False)
        return parse_space(data, source=self.source, text=text)


def parse_space(data: Any, *, source: str = "<space>", text: str | None = None) -> SearchSpace:
    """Validate a parsed space document (see ``docs/search-spaces.md``); errors name ``source`` and the field."""
    f = Fields(source)
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: the document must be a mapping starting with 'format: {SPACE_FORMAT}'")
    fmt = data.get("format")
    if fmt != SPACE_FORMAT:
        raise f.error("format", f"expected {SPACE_FORMAT!r}, got {fmt!r}")
    d = f.mapping("<top level>", data, {"format", "name", "mask"}, {"description", "steps", "baselines"})
    name = d["name"]
    if not isinstance(name, str) or not name.strip():
        raise f.error("name", f"expected a non-empty string, got {name!r}")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise f.error("description", f"expected a string, got {description!r}")

    steps = None
    if d.get("steps") is not None:
        steps = Steps.parse(f, "steps", f.section("steps", d["steps"], Steps.defaults, Steps.required))

    registry = mask_families()
    modifiers = {"scale_shift": ("off", "lstsq", "distill"), "cfg": ("shared", "uncond")}
    mask = f.mapping("mask", d["mask"], {"families"}, {n for n, c in registry.items() if c.section} | set(modifiers))
    families = f.choice("mask.families", mask["families"], tuple(registry)).choices
    chosen: dict[str, tuple[str, ...]] = {}
    for key, allowed in modifiers.items():
        given = mask.get(key, [allowed[0]])
        given = [("off" if v is False else v) for v in given] if isinstance(given, list) else given  # YAML: off→False
        picked = f.choice(f"mask.{key}", "off" if given is False else given, allowed).choices
        chosen[key] = tuple(sorted(picked, key=allowed.index))  # the neutral choice first (baselines use it)
    for fam in sorted(set(mask) - {"families"} - set(modifiers)):
        if fam not in families:
            raise f.error(f"mask.{fam}", f"configures family {fam!r}, which mask.families does not list")
    if families == ("none",) and steps is None:
        raise f.error("mask.families", "only 'none' and no 'steps' section: the space holds just the reference")
    masks: dict[str, MaskFamily] = {}
    for n, cls in registry.items():
        if n in families:
            path = f"mask.{n}"
            masks[n] = cls.parse(f, path, f.section(path, mask.get(n), cls.defaults, cls.required))

    baselines, baseline_options = _parse_baselines(f, d.get("baselines"), steps is not None, families)

    if text is None:
        text = yaml.safe_dump(dict(data), sort_keys=True)
    return SearchSpace(
        name=name.strip(), description=description.strip(), source=source, text=text, families=families,
        baselines=baselines, baseline_options=baseline_options, steps=steps, masks=masks,
        scale_shift=chosen["scale_shift"], cfg=chosen["cfg"],
    )


def _parse_baselines(f: Fields, value: Any, has_steps: bool, families: tuple[str, ...]
                     ) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """``baselines:`` is absent (every kind the space can express), a list of kinds, or a mapping of kind →
    grid (``steps: {fractions: [...]}``, ``deepcache: {intervals: [...]}``, ``blockcaching: {thresholds: [...]}``,
    each optional)."""
    kinds_known = baseline_families()
    reasons = {k: c.expressible(has_steps, families) for k, c in kinds_known.items()}
    if value is None:
        return tuple(k for k in kinds_known if reasons[k] is None), {}
    options: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        kinds = []
        for kind, grid_value in value.items():
            path = f"baselines.{kind}"
            if kind not in kinds_known:
                raise f.error(path, f"unknown baseline kind; expected one of {list(kinds_known)}")
            grid = kinds_known[kind].grid
            if grid is None:  # pragma: no cover - baseline_families() holds only families with a grid
                raise f.error(path, f"family {kind!r} has no baselines")
            g = f.mapping(path, grid_value or {}, set(), {grid.key})
            if grid.key in g:
                options[kind] = {grid.key: grid.parse(f, f"{path}.{grid.key}", g[grid.key])}
            kinds.append(kind)
    elif value == []:
        kinds = []
    else:
        kinds = list(f.choice("baselines", value, tuple(kinds_known)).choices)
    for kind in kinds:
        if reasons[kind] is not None:
            raise f.error(f"baselines.{kind}", f"{kind!r} baselines need {reasons[kind]}")
    return tuple(kinds), options


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a space file (raises :class:`SpaceError` naming the file and field)."""
    p = Path(path)
    if not p.exists():
        raise SpaceError(f"{p}: no such search-space file; built-in spaces: {', '.join(builtin_space_names())}")
    try:  # untrusted input: bounded size and depth, no anchors/aliases, duplicate keys refused
        text = read_untrusted_text(p, what="search-space file")
        data = parse_untrusted_yaml(p, text)
    except ScheduleError as e:
        raise SpaceError(str(e)) from None
    return parse_space(data, source=str(p), text=text)


def builtin_space_names() -> list[str]:
    """Names of the shipped spaces (``blocks``, ``deepcache``, ``dit``, ``ecad``, ``joint``, ``steps``)."""
    return sorted(p.stem for p in SHIPPED_SPACES.glob("*.yaml"))


def find_space(spec: str | Path) -> Path:
    """A space file path from ``spec``: an existing file, or the name of a shipped space (``joint``)."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") or str(p.parent) == "search_spaces":
        candidate = SHIPPED_SPACES / f"{stem}.yaml"
        if candidate.is_file():
            return candidate
    raise SpaceError(
        f"{spec}: no such search-space file; pass a path or one of the built-in spaces: "
        f"{', '.join(builtin_space_names())}"
    )


def default_space(blocks: BlockSpace | None = None) -> SearchSpace:
    """The space of a run that names none: the shipped ``dit`` space for a transformer denoiser (a stack of
    transformer blocks: flux, sd3, pixart, wan and the generic transformer adapter), else ``joint``, without the
    mask families the denoiser cannot run (DeepCache needs skip branches: ``blocks.deepcache_branches``)."""
    name = DEFAULT_TRANSFORMER_SPACE if blocks is not None and is_transformer(blocks) else DEFAULT_SPACE
    space = load_space(find_space(name))
    if blocks is None:
        return space
    drop = [n for n, cls in mask_families().items() if n in space.families and not cls.supports(blocks)]
    if not drop:
        return space
    return space.without(drop, f"this denoiser ({blocks.family}) cannot run {', '.join(drop)}")


def drop_unavailable(space: SearchSpace, ctx: SpaceContext) -> tuple[SearchSpace, list[str]]:
    """A shipped space without the runtime families the context's model cannot run (their library is not
    installed, the denoiser has no ``enable_cache``, cache-dit has no adapter for it), and a note per family left
    out. A space file of the user's is returned as it is: resolving it refuses such a family by name.
    """
    missing = {name: why for name, fam in space.masks.items()
               if isinstance(fam, RuntimeFamily) and (why := fam.unavailable(ctx)) is not None}
    if not missing or not space.label.startswith("search_spaces/") or set(space.families) <= set(missing):
        return space, []
    notes = [f"family {name!r} left out of space {space.name!r}: {why}" for name, why in missing.items()]
    return space.without(list(missing), "their caches cannot run on this model here"), notes
