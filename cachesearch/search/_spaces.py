"""Search spaces as data: load and validate ``cachesearch/space@1`` YAML files, map Optuna trials to policies.

A space file lists which policy families a study may propose and the range of every parameter (format in
``docs/search-spaces.md``). :func:`load_space` validates the file on its own; :meth:`SearchSpace.resolve` then
checks it against one model and sampler (:class:`SpaceContext`) and returns a :class:`ResolvedSpace`, whose
:meth:`~ResolvedSpace.suggest` maps a trial to a policy as a pure function of the trial's parameters, so any
trial replays exactly with ``optuna.trial.FixedTrial(trial.params)``.

Every family's parameters are suggested in every trial (a flat space), so NSGA-II's crossover sees all of them
in all trials; parameters that the chosen family does not use are ignored, and the resulting duplicates are
caught by the study's mask deduplication.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from ..schedule import (
    BlockCachingAuto,
    BlockProfile,
    DeepCache,
    Full,
    Joint,
    PeriodicMask,
    Policy,
    ScheduleError,
    StepSet,
)
from ..schedule._yaml import DuplicateKeyError, strict_yaml_load

__all__ = [
    "FAMILIES",
    "SPACE_FORMAT",
    "ResolvedSpace",
    "SearchSpace",
    "SpaceContext",
    "SpaceError",
    "builtin_space_names",
    "find_space",
    "load_space",
    "parse_space",
]

SPACE_FORMAT = "cachesearch/space@1"
FAMILIES = ("none", "deepcache", "periodic", "blockcaching")
BASELINE_KINDS = ("steps", "deepcache", "blockcaching")
SPACINGS = ("scheduler", "linear", "power")
_REPO_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"
_PACKAGED_SPACES = Path(__file__).resolve().parent / "spaces"


class SpaceError(ValueError):
    """A search-space file is invalid or does not fit the model; the message names the file and field."""


class _Trial(Protocol):  # the part of optuna.Trial / FixedTrial a space uses
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


# -- parameter specifications ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntParam:
    """An integer parameter: ``low``/``high`` may be symbols resolved per model (``steps``, ``last``)."""

    low: int | str
    high: int | str
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatParam:
    """A float parameter in ``[low, high]``, optionally log-scaled."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class ChoiceParam:
    """A categorical parameter."""

    choices: tuple[str, ...]


ParamSpec = IntParam | FloatParam | ChoiceParam


@dataclass(frozen=True)
class StepsSpec:
    """Which step sets a space may propose: ``count`` steps with a spacing rule."""

    count: IntParam
    spacing: ChoiceParam
    power: FloatParam


@dataclass(frozen=True)
class DeepCacheSpec:
    """Ranges of DeepCache's parameters (``center`` as a fraction of the steps)."""

    interval: IntParam
    branch: IntParam
    schedule: ChoiceParam
    center: FloatParam
    power: FloatParam


@dataclass(frozen=True)
class PeriodicSpec:
    """Per-block period, phase and active window (fractions of the steps), see :class:`PeriodicMask`."""

    blocks: str | tuple[str, ...]
    period: IntParam
    phase: IntParam
    start: FloatParam
    end: FloatParam


@dataclass(frozen=True)
class BlockCachingSpec:
    """Range of Block Caching's change threshold (needs the run's block-change profile)."""

    threshold: FloatParam


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file, not yet tied to a model (see :meth:`resolve`)."""

    name: str
    description: str
    source: str
    text: str
    families: tuple[str, ...]
    baselines: tuple[str, ...]
    baseline_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    steps: StepsSpec | None = None
    deepcache: DeepCacheSpec | None = None
    periodic: PeriodicSpec | None = None
    blockcaching: BlockCachingSpec | None = None

    @property
    def digest(self) -> str:
        """``sha256:`` of the file text: a resumed study refuses a space whose text changed."""
        return "sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def resolve(self, ctx: SpaceContext) -> ResolvedSpace:
        """Tie the space to a model and sampler: resolve symbols, check ranges and blocks (raises SpaceError)."""
        return ResolvedSpace(self, ctx)


@dataclass(frozen=True)
class SpaceContext:
    """What a space needs to know about the model and sampler of a study.

    Attributes:
        num_steps: the reference sampler's steps (``--steps``).
        scheduler: the scheduler's class name.
        accepts_timesteps: whether the scheduler takes explicit ``timesteps=`` (needed by linear/power spacing).
        stages: stage-level block names in execution order.
        blocks: every cacheable block name (stages and layers).
        n_branches: number of DeepCache skip branches (0 if none).
        profile: the block-change profile over ``num_steps`` steps (Block Caching), if computed.
        profile_id: an identifier of that profile, recorded in policies.
    """

    num_steps: int
    scheduler: str
    accepts_timesteps: bool
    stages: tuple[str, ...]
    blocks: tuple[str, ...]
    n_branches: int
    profile: BlockProfile | None = field(default=None, compare=False)
    profile_id: str | None = None


# -- loading -----------------------------------------------------------------------------------------------
class _Ctx:
    """Error context: the file being parsed."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {message}")


def _mapping(c: _Ctx, path: str, value: Any, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(value, Mapping):
        return_keys = sorted(required | optional)
        raise c.error(path, f"expected a mapping with keys {return_keys}, got {value!r}")
    keys = {str(k) for k in value}
    missing = required - keys
    if missing:
        raise c.error(path, f"missing required key(s) {sorted(missing)}")
    unknown = keys - required - optional
    if unknown:
        raise c.error(path, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(required | optional)}")
    return {str(k): v for k, v in value.items()}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _int_param(c: _Ctx, path: str, value: Any, *, lo: int, symbols: tuple[str, ...] = ()) -> IntParam:
    """``5`` (fixed) or ``{low, high[, step][, log]}``; ``low``/``high`` may be one of ``symbols``."""
    sym = f" or one of {list(symbols)}" if symbols else ""

    def bound(key: str, v: Any) -> int | str:
        if isinstance(v, str) and v in symbols:
            return v
        if not _is_int(v):
            raise c.error(f"{path}.{key}", f"expected an integer{sym}, got {v!r}")
        if v < lo:
            raise c.error(f"{path}.{key}", f"expected an integer >= {lo}, got {v}")
        return int(v)

    if _is_int(value) or (isinstance(value, str) and value in symbols):
        b = bound("value", value) if not _is_int(value) else value
        if _is_int(b) and b < lo:
            raise c.error(path, f"expected an integer >= {lo}, got {b}")
        return IntParam(low=b, high=b)
    m = _mapping(c, path, value, {"low", "high"}, {"step", "log"})
    low, high = bound("low", m["low"]), bound("high", m["high"])
    if _is_int(low) and _is_int(high) and low > high:
        raise c.error(path, f"low ({low}) must be <= high ({high})")
    step = m.get("step", 1)
    if not _is_int(step) or step < 1:
        raise c.error(f"{path}.step", f"expected a positive integer, got {step!r}")
    log = m.get("log", False)
    if not isinstance(log, bool):
        raise c.error(f"{path}.log", f"expected true or false, got {log!r}")
    if log and step != 1:
        raise c.error(path, "log: true needs step: 1 (Optuna does not combine them)")
    if log and _is_int(low) and low < 1:
        raise c.error(f"{path}.low", "a log-scaled integer range needs low >= 1")
    return IntParam(low=low, high=high, step=step, log=log)


def _float_param(c: _Ctx, path: str, value: Any, *, lo: float, hi: float | None = None,
                 strict_lo: bool = False) -> FloatParam:
    """``0.5`` (fixed) or ``{low, high[, log]}`` within ``[lo, hi]``."""
    what = f"a number {'>' if strict_lo else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")

    def check(key: str, v: Any) -> float:
        if not _is_num(v):
            raise c.error(f"{path}.{key}" if key else path, f"expected {what}, got {v!r}")
        f = float(v)
        if (f <= lo if strict_lo else f < lo) or (hi is not None and f > hi):
            raise c.error(f"{path}.{key}" if key else path, f"expected {what}, got {f}")
        return f

    if _is_num(value):
        f = check("", value)
        return FloatParam(low=f, high=f)
    m = _mapping(c, path, value, {"low", "high"}, {"log"})
    low, high = check("low", m["low"]), check("high", m["high"])
    if low > high:
        raise c.error(path, f"low ({low}) must be <= high ({high})")
    log = m.get("log", False)
    if not isinstance(log, bool):
        raise c.error(f"{path}.log", f"expected true or false, got {log!r}")
    if log and low <= 0:
        raise c.error(f"{path}.low", "a log-scaled range needs low > 0")
    return FloatParam(low=low, high=high, log=log)


def _choice_param(c: _Ctx, path: str, value: Any, allowed: tuple[str, ...]) -> ChoiceParam:
    """A list of choices (or one choice as a string), each one of ``allowed``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise c.error(path, f"expected a non-empty list of {list(allowed)}, got {value!r}")
    for i, v in enumerate(items):
        if v not in allowed:
            raise c.error(f"{path}[{i}]", f"expected one of {list(allowed)}, got {v!r}")
    if len(set(items)) != len(items):
        raise c.error(path, f"lists a choice twice: {items}")
    return ChoiceParam(tuple(items))


_DEFAULTS: dict[str, Any] = {
    "steps": {"spacing": ["scheduler"], "power": {"low": 1.0, "high": 3.0}},
    "deepcache": {
        "interval": {"low": 2, "high": 6},
        "branch": {"low": 0, "high": "last"},
        "schedule": ["uniform"],
        "center": {"low": 0.1, "high": 0.6},
        "power": {"low": 1.1, "high": 2.0},
    },
    "periodic": {
        "blocks": "stages",
        "period": {"low": 1, "high": 6},
        "phase": {"low": 0, "high": 5},
        "start": {"low": 0.0, "high": 0.5},
        "end": {"low": 0.5, "high": 1.0},
    },
    "blockcaching": {"threshold": {"low": 0.01, "high": 2.0, "log": True}},
}


def _with_defaults(kind: str, value: Any) -> Any:
    if value is None:
        value = {}
    if isinstance(value, Mapping):
        return {**_DEFAULTS[kind], **value}
    return value


def parse_space(data: Any, *, source: str = "<space>", text: str | None = None) -> SearchSpace:
    """Validate a parsed space document (see ``docs/search-spaces.md``); errors name ``source`` and the field."""
    c = _Ctx(source)
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: the document must be a mapping starting with 'format: {SPACE_FORMAT}'")
    fmt = data.get("format")
    if fmt != SPACE_FORMAT:
        raise c.error("format", f"expected {SPACE_FORMAT!r}, got {fmt!r}")
    d = _mapping(c, "<top level>", data, {"format", "name", "mask"}, {"description", "steps", "baselines"})
    name = d["name"]
    if not isinstance(name, str) or not name.strip():
        raise c.error("name", f"expected a non-empty string, got {name!r}")
    description = d.get("description", "")
    if not isinstance(description, str):
        raise c.error("description", f"expected a string, got {description!r}")

    steps = None
    if d.get("steps") is not None:
        s = _mapping(c, "steps", _with_defaults("steps", d["steps"]), {"count"}, {"spacing", "power"})
        steps = StepsSpec(
            count=_int_param(c, "steps.count", s["count"], lo=1, symbols=("steps",)),
            spacing=_choice_param(c, "steps.spacing", s["spacing"], SPACINGS),
            power=_float_param(c, "steps.power", s["power"], lo=0.0, strict_lo=True),
        )

    mask = _mapping(c, "mask", d["mask"], {"families"}, set(FAMILIES) - {"none"})
    families = _choice_param(c, "mask.families", mask["families"], FAMILIES).choices
    for fam in set(mask) - {"families"}:
        if fam not in families:
            raise c.error(f"mask.{fam}", f"configures family {fam!r}, which mask.families does not list")
    if families == ("none",) and steps is None:
        raise c.error("mask.families", "only 'none' and no 'steps' section: the space holds just the reference")

    dc = pm = bc = None
    if "deepcache" in families:
        m = _mapping(c, "mask.deepcache", _with_defaults("deepcache", mask.get("deepcache")), set(),
                     {"interval", "branch", "schedule", "center", "power"})
        dc = DeepCacheSpec(
            interval=_int_param(c, "mask.deepcache.interval", m["interval"], lo=1),
            branch=_int_param(c, "mask.deepcache.branch", m["branch"], lo=0, symbols=("last",)),
            schedule=_choice_param(c, "mask.deepcache.schedule", m["schedule"], ("uniform", "nonuniform")),
            center=_float_param(c, "mask.deepcache.center", m["center"], lo=0.0, hi=1.0),
            power=_float_param(c, "mask.deepcache.power", m["power"], lo=1.0, strict_lo=True),
        )
    if "periodic" in families:
        m = _mapping(c, "mask.periodic", _with_defaults("periodic", mask.get("periodic")), set(),
                     {"blocks", "period", "phase", "start", "end"})
        blocks = m["blocks"]
        if isinstance(blocks, str):
            if blocks not in ("stages", "layers"):
                raise c.error("mask.periodic.blocks", f"expected 'stages', 'layers' or a list of block names, "
                                                      f"got {blocks!r}")
        elif isinstance(blocks, list) and blocks and all(isinstance(b, str) and b for b in blocks):
            if len(set(blocks)) != len(blocks):
                raise c.error("mask.periodic.blocks", f"lists a block twice: {blocks}")
            blocks = tuple(blocks)
        else:
            raise c.error("mask.periodic.blocks", f"expected 'stages', 'layers' or a non-empty list of block "
                                                  f"names like ['up_blocks.1', 'mid_block'], got {blocks!r}")
        pm = PeriodicSpec(
            blocks=blocks,
            period=_int_param(c, "mask.periodic.period", m["period"], lo=1),
            phase=_int_param(c, "mask.periodic.phase", m["phase"], lo=0),
            start=_float_param(c, "mask.periodic.start", m["start"], lo=0.0, hi=1.0),
            end=_float_param(c, "mask.periodic.end", m["end"], lo=0.0, hi=1.0),
        )
    if "blockcaching" in families:
        m = _mapping(c, "mask.blockcaching", _with_defaults("blockcaching", mask.get("blockcaching")), set(),
                     {"threshold"})
        bc = BlockCachingSpec(threshold=_float_param(c, "mask.blockcaching.threshold", m["threshold"], lo=0.0))

    baselines, baseline_options = _parse_baselines(c, d.get("baselines"), steps, families)

    if text is None:
        text = yaml.safe_dump(dict(data), sort_keys=True)
    return SearchSpace(
        name=name.strip(), description=description.strip(), source=source, text=text, families=families,
        baselines=tuple(baselines), baseline_options=baseline_options, steps=steps, deepcache=dc, periodic=pm,
        blockcaching=bc,
    )


_BASELINE_KEYS = {"steps": ("fractions", 0.0, 1.0), "deepcache": ("intervals", 2, None),
                  "blockcaching": ("thresholds", 0.0, None)}


def _parse_baselines(c: _Ctx, value: Any, steps: StepsSpec | None, families: tuple[str, ...]
                     ) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    """``baselines:`` is absent (every kind the space can express), a list of kinds, or a mapping of kind →
    grid (``steps: {fractions: [...]}``, ``deepcache: {intervals: [...]}``, ``blockcaching: {thresholds: [...]}``,
    each optional)."""
    expressible = {"steps": steps is not None and "none" in families, "deepcache": "deepcache" in families,
                   "blockcaching": "blockcaching" in families}
    if value is None:
        return tuple(k for k in BASELINE_KINDS if expressible[k]), {}
    options: dict[str, dict[str, Any]] = {}
    if isinstance(value, Mapping):
        kinds = []
        for kind, grid in value.items():
            path = f"baselines.{kind}"
            if kind not in BASELINE_KINDS:
                raise c.error(path, f"unknown baseline kind; expected one of {list(BASELINE_KINDS)}")
            key, lo, hi = _BASELINE_KEYS[kind]
            g = _mapping(c, path, grid or {}, set(), {key})
            if key in g:
                items = g[key]
                if not isinstance(items, list) or not items:
                    raise c.error(f"{path}.{key}", f"expected a non-empty list, got {items!r}")
                for i, v in enumerate(items):
                    ok = _is_int(v) if kind == "deepcache" else _is_num(v)
                    if not ok or v < lo or (hi is not None and v > hi) or (kind != "deepcache" and v == lo):
                        what = "an integer >= 2" if kind == "deepcache" else f"a number > {lo}"
                        what += f" and <= {hi}" if hi is not None else ""
                        raise c.error(f"{path}.{key}[{i}]", f"expected {what}, got {v!r}")
                options[kind] = {key: list(items)}
            kinds.append(kind)
    elif value == []:
        kinds = []
    else:
        kinds = list(_choice_param(c, "baselines", value, BASELINE_KINDS).choices)
    for kind in kinds:
        if not expressible[kind]:
            need = "a 'steps' section and family 'none'" if kind == "steps" else f"family {kind!r} in mask.families"
            raise c.error(f"baselines.{kind}", f"{kind!r} baselines need {need}")
    return tuple(kinds), options


def load_space(path: str | Path) -> SearchSpace:
    """Load and validate a space file (raises :class:`SpaceError` naming the file and field)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{p}: no such search-space file; built-in spaces: {', '.join(builtin_space_names())}")\
            from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{p}: cannot read the file ({e})") from e
    try:
        data = strict_yaml_load(text)
    except DuplicateKeyError as e:
        raise SpaceError(f"{p}: {e}") from e
    except yaml.YAMLError as e:
        raise SpaceError(f"{p}: not valid YAML: {e}") from e
    return parse_space(data, source=str(p), text=text)


def _space_dirs() -> list[Path]:
    return [d for d in (_REPO_SPACES, _PACKAGED_SPACES) if d.is_dir()]


def builtin_space_names() -> list[str]:
    """Names of the shipped spaces (``joint``, ``deepcache``, ``blocks``, ``steps``)."""
    names: set[str] = set()
    for d in _space_dirs():
        names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_space(spec: str | Path) -> Path:
    """A space file path from ``spec``: an existing file, or the name of a shipped space (``joint``)."""
    p = Path(spec).expanduser()
    if p.is_file():
        return p
    stem = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") or str(p.parent) == "search_spaces":
        for d in _space_dirs():
            candidate = d / f"{stem}.yaml"
            if candidate.is_file():
                return candidate
    raise SpaceError(
        f"{spec}: no such search-space file; pass a path or one of the built-in spaces: "
        f"{', '.join(builtin_space_names())}"
    )


# -- resolution against a model ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dist:
    """A concrete Optuna distribution of one parameter."""

    name: str
    kind: str  # int | float | choice
    low: Any = None
    high: Any = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: _Trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def neutral(self) -> Any:
        """The value a baseline gives a parameter it does not use."""
        return self.choices[0] if self.kind == "choice" else self.low

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int":
            return _is_int(value) and self.low <= value <= self.high and (value - self.low) % self.step == 0
        return _is_num(value) and self.low <= float(value) <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        return f"[{self.low}, {self.high}]" + (" (log)" if self.log else "")


class ResolvedSpace:
    """A space tied to one model and sampler; :meth:`suggest` maps a trial to a policy.

    Raises:
        SpaceError: a range does not fit the model (e.g. ``steps.count.high`` above the reference steps, an
            unknown block, a DeepCache branch that does not exist).
    """

    def __init__(self, space: SearchSpace, ctx: SpaceContext) -> None:
        self.space = space
        self.ctx = ctx
        self.notes: list[str] = []
        c = _Ctx(space.source)
        self._dists: dict[str, _Dist] = {}
        if space.steps is not None:
            st = space.steps
            self._int("steps.count", st.count, c, {"steps": ctx.num_steps}, hi=ctx.num_steps,
                      hi_why=f"the reference sampler runs {ctx.num_steps} steps (--steps)")
            spacing = st.spacing.choices
            if not ctx.accepts_timesteps and spacing != ("scheduler",):
                self.notes.append(
                    f"steps.spacing restricted to 'scheduler': {ctx.scheduler} does not accept explicit timesteps "
                    f"(linear/power spacing needs e.g. DPMSolverMultistepScheduler: --scheduler dpmsolver++)"
                )
                spacing = ("scheduler",)
            if len(spacing) > 1:
                self._dists["steps.spacing"] = _Dist("steps.spacing", "choice", choices=spacing)
            self._spacing_fixed = spacing[0] if len(spacing) == 1 else None
            if "power" in spacing:
                self._float("steps.power", st.power)
        if len(space.families) > 1:
            self._dists["mask.family"] = _Dist("mask.family", "choice", choices=space.families)
        if space.deepcache is not None:
            dc = space.deepcache
            if ctx.n_branches == 0:
                raise c.error("mask.families", "family 'deepcache' needs skip branches, which this denoiser lacks")
            self._int("deepcache.interval", dc.interval, c, {})
            self._int("deepcache.branch", dc.branch, c, {"last": ctx.n_branches - 1}, hi=ctx.n_branches - 1,
                      hi_why=f"this denoiser has DeepCache branches 0..{ctx.n_branches - 1}")
            if len(dc.schedule.choices) > 1:
                self._dists["deepcache.schedule"] = _Dist("deepcache.schedule", "choice", choices=dc.schedule.choices)
            if "nonuniform" in dc.schedule.choices:
                self._float("deepcache.center", dc.center)
                self._float("deepcache.power", dc.power)
        self._periodic_blocks: tuple[str, ...] = ()
        if space.periodic is not None:
            pm = space.periodic
            if pm.blocks == "stages":
                blocks = ctx.stages
            elif pm.blocks == "layers":
                blocks = tuple(b for b in ctx.blocks if b not in ctx.stages)
            else:
                blocks = tuple(pm.blocks)
                for i, b in enumerate(blocks):
                    if b not in ctx.blocks:
                        raise c.error(f"mask.periodic.blocks[{i}]", f"unknown block {b!r}; this denoiser's stages "
                                                                    f"are {list(ctx.stages)}")
                for i, b in enumerate(blocks):
                    parent = b.rsplit(".", 2)[0] if b.count(".") >= 2 else None
                    if parent in blocks:
                        raise c.error(f"mask.periodic.blocks[{i}]", f"{b!r} is inside {parent!r}, which is also "
                                                                    f"listed; list the stage or its layers")
            self._periodic_blocks = tuple(b for b in ctx.blocks if b in blocks)
            for b in self._periodic_blocks:
                self._int(f"periodic.{b}.period", pm.period, c, {})
                self._int(f"periodic.{b}.phase", pm.phase, c, {})
                self._float(f"periodic.{b}.start", pm.start)
                self._float(f"periodic.{b}.end", pm.end)
        if space.blockcaching is not None:
            if ctx.profile is None:
                raise SpaceError(f"{space.source}: mask.families: family 'blockcaching' needs the run's "
                                 f"block-change profile, which was not computed")
            self._float("blockcaching.threshold", space.blockcaching.threshold)

    # -- distribution builders ------------------------------------------------------------------------
    def _int(self, name: str, p: IntParam, c: _Ctx, symbols: Mapping[str, int], *, hi: int | None = None,
             hi_why: str = "") -> None:
        field_path = _field_of(name)
        low = symbols[p.low] if isinstance(p.low, str) else p.low
        high = symbols[p.high] if isinstance(p.high, str) else p.high
        if isinstance(p.low, str) and p.low not in symbols or isinstance(p.high, str) and p.high not in symbols:
            raise c.error(field_path, f"symbol not allowed here (allowed: {sorted(symbols)})")
        if low > high:
            raise c.error(field_path, f"resolves to low={low} > high={high} for this model")
        if hi is not None and high > hi:
            raise c.error(f"{field_path}.high", f"{high} is too large: {hi_why}; use <= {hi}")
        if (high - low) % p.step:
            high = low + (high - low) // p.step * p.step
        self._dists[name] = _Dist(name, "int", low=int(low), high=int(high), step=p.step, log=p.log)

    def _float(self, name: str, p: FloatParam) -> None:
        self._dists[name] = _Dist(name, "float", low=float(p.low), high=float(p.high), log=p.log)

    # -- the pure trial → policy map ------------------------------------------------------------------
    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter a trial of this space has, in suggestion order."""
        return tuple(self._dists)

    def distributions(self) -> dict[str, str]:
        """Parameter → readable range (for reports and docs)."""
        return {n: d.describe() for n, d in self._dists.items()}

    def _get(self, trial: _Trial, name: str, default: Any = None) -> Any:
        d = self._dists.get(name)
        return d.suggest(trial) if d is not None else default

    def suggest(self, trial: _Trial) -> Policy:
        """Map a trial to a policy. Pure: the result depends only on the trial's parameter values.

        Every parameter of the space is suggested (flat space), whichever family is chosen.
        """
        values = {name: d.suggest(trial) for name, d in self._dists.items()}
        return self.policy_from_params(values)

    def policy_from_params(self, values: Mapping[str, Any]) -> Policy:
        """The policy of a complete parameter assignment (what :meth:`suggest` returns for those values)."""
        sp, ctx = self.space, self.ctx
        family = values.get("mask.family", sp.families[0])
        steps: StepSet | None = None
        if sp.steps is not None:
            count = int(values.get("steps.count", self._dists["steps.count"].low))
            spacing = values.get("steps.spacing", self._spacing_fixed)
            power = float(values.get("steps.power", 1.0)) if spacing == "power" else 1.0
            steps = StepSet(count=count, spacing=spacing, power=power)
            if count == ctx.num_steps and spacing == "scheduler":
                steps = None  # the reference step set: a plain mask policy compiles to the same schedule
        mask: Any
        if family == "none":
            return steps if steps is not None else Full()
        if family == "deepcache":
            schedule = values.get("deepcache.schedule", sp.deepcache.schedule.choices[0])  # type: ignore[union-attr]
            kwargs: dict[str, Any] = {}
            if schedule == "nonuniform":
                n = steps.count if steps is not None else ctx.num_steps
                center = min(int(round(float(values["deepcache.center"]) * n)), max(n - 1, 0))
                kwargs = {"center": center, "power": float(values["deepcache.power"])}
            mask = DeepCache(interval=int(values["deepcache.interval"]), branch=int(values["deepcache.branch"]),
                             schedule=schedule, **kwargs)
        elif family == "periodic":
            entries = []
            for b in self._periodic_blocks:
                period = int(values[f"periodic.{b}.period"])
                phase = int(values[f"periodic.{b}.phase"]) % period
                start, end = float(values[f"periodic.{b}.start"]), float(values[f"periodic.{b}.end"])
                if start > end:
                    start, end = end, start
                entries.append((b, period, phase, start, end))
            mask = PeriodicMask(blocks=tuple(entries))
        elif family == "blockcaching":
            # Block Caching's profile covers the reference steps, so this family always runs them.
            return BlockCachingAuto(threshold=float(values["blockcaching.threshold"]), profile=ctx.profile,
                                    profile_id=ctx.profile_id)
        else:  # pragma: no cover - validated at load time
            raise ScheduleError(f"mask.family: unknown family {family!r}")
        return Joint(steps=steps, mask=mask) if steps is not None else mask

    # -- baselines → parameters -----------------------------------------------------------------------
    def params_for(self, policy: Policy) -> dict[str, Any] | None:
        """Parameters under which :meth:`suggest` yields ``policy`` (a baseline), or None if the space cannot.

        Parameters the policy does not use get their range's lower bound (or first choice).
        """
        params = {n: d.neutral() for n, d in self._dists.items()}
        sp, n_ref = self.space, self.ctx.num_steps

        def set_(name: str, value: Any) -> bool:
            d = self._dists.get(name)
            if d is None:  # fixed by the space: it must already equal what the policy needs
                return True
            if not d.contains(value):
                return False
            params[name] = value
            return True

        def set_family(fam: str) -> bool:
            if fam not in sp.families:
                return False
            return set_("mask.family", fam) if "mask.family" in self._dists else sp.families[0] == fam

        def set_reference_steps() -> bool:
            if sp.steps is None:
                return True
            ok = set_("steps.count", n_ref)
            if self._spacing_fixed is not None:
                return ok and self._spacing_fixed == "scheduler"
            return ok and set_("steps.spacing", "scheduler")

        if isinstance(policy, StepSet):
            if sp.steps is None or policy.timesteps is not None or policy.spacing != "scheduler":
                return None
            if not set_family("none") or not set_("steps.count", policy.count):
                return None
            if self._spacing_fixed is None and not set_("steps.spacing", "scheduler"):
                return None
            if self._spacing_fixed not in (None, "scheduler"):
                return None
        elif isinstance(policy, DeepCache):
            if not set_family("deepcache") or not set_reference_steps():
                return None
            if not (set_("deepcache.interval", policy.interval) and set_("deepcache.branch", policy.branch)):
                return None
            if policy.schedule != "uniform" or (
                "deepcache.schedule" in self._dists and not set_("deepcache.schedule", "uniform")
            ):
                return None
            if "deepcache.schedule" not in self._dists and sp.deepcache.schedule.choices[0] != "uniform":  # type: ignore[union-attr]
                return None
        elif isinstance(policy, BlockCachingAuto):
            if not set_family("blockcaching") or not set_("blockcaching.threshold", policy.threshold):
                return None
        else:
            return None
        try:
            ok = _policy_equal(self.policy_from_params(params), policy)
        except (ScheduleError, KeyError):
            return None
        return params if ok else None


def _policy_equal(a: Policy, b: Policy) -> bool:
    """Whether two policies describe the same schedule (a Joint with the reference step set equals its mask)."""
    if isinstance(a, Joint) and not isinstance(b, (Joint, StepSet)):
        return _policy_equal(a.mask, b)
    if isinstance(a, BlockCachingAuto) and isinstance(b, BlockCachingAuto):
        return a.threshold == b.threshold  # the profile is the run's own; its id may be spelled differently
    return a == b


def _field_of(param: str) -> str:
    """The space-file field a parameter comes from (``periodic.up_blocks.1.period`` → ``mask.periodic.period``)."""
    head, _, tail = param.partition(".")
    if head == "steps":
        return param
    if head == "periodic":
        return f"mask.periodic.{param.rsplit('.', 1)[1]}"
    return f"mask.{head}.{tail}"
