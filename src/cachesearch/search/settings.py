"""Run settings, typed once: every option of ``cachesearch run``, its default, its flag and its help.

``cachesearch run`` builds its options from :class:`RunSettings` (:func:`option_help` appends each default,
so no help text repeats one), a run stores them in ``run.yaml``, and :meth:`RunSettings.eval_config` maps
them to the evaluator's :class:`~cachesearch.evaluate.EvalConfig`. The step count is ``num_steps`` in code;
its flag (``--steps``) and its key in ``run.yaml`` and in a study's identity stay ``steps``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .objective import Objectives
from .screening import Screening

if TYPE_CHECKING:
    from ..evaluate import EvalConfig

__all__ = [
    "EXECUTORS",
    "LATENCY_MODES",
    "SAMPLERS",
    "WARM_STARTS",
    "RunSettings",
    "SearchError",
    "default",
    "default_name",
    "flag",
    "option_help",
    "option_names",
]

SAMPLERS = ("nsga2", "tpe", "gp", "random")
WARM_STARTS = ("baselines", "crossed", "grid")
EXECUTORS = ("local", "ray")
LATENCY_MODES = ("analytic", "measured")


class SearchError(ValueError):
    """A run cannot start or resume as asked; the message says why and what to do."""


def _opt(default: Any, flag: str, help: str, *, default_text: str | None = None, key: str | None = None) -> Any:
    """A setting: ``flag`` and ``help`` of its CLI option; ``default_text`` describes a None default; ``key``
    is its name in ``run.yaml`` when that differs from the field's."""
    return field(default=default, metadata={"flag": flag, "help": help, "default_text": default_text, "key": key})


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """Everything that defines a search run. Fields in :attr:`IDENTITY` must match when a study resumes."""

    name: str = field(metadata={"flag": "--name", "help": "Run name (directory under --out); default from model "
                                                          "and sampler. An existing run is resumed."})
    model: str = _opt("embedded", "--model", "Model spec: embedded, arch:sd15, a pipeline folder or a cached hub id.")
    space: str = _opt("joint", "--space", "Search space: a built-in name (joint, dit, ecad, runtime, deepcache, "
                                          "blocks, steps) or a YAML file (docs/search-spaces.md).",
                      default_text="dit for a transformer denoiser (flux, sd3, pixart, wan, transformer), joint "
                                   "otherwise, without the families the model cannot run")
    num_steps: int = _opt(20, "--steps", "Reference sampler steps.", key="steps")
    scheduler: str | None = _opt(None, "--scheduler", "Sampler: ddim, dpmsolver++, euler, pndm, heun or a "
                                                      "diffusers class name.", default_text="the model's own")
    guidance_scale: float | None = _opt(None, "--guidance-scale", "CFG scale.", default_text="the model's")
    n_train: int = _opt(8, "--n-train", "Train images per evaluation.")
    n_heldout: int = _opt(16, "--n-heldout", "Held-out (prompt, seed) pairs every exported schedule and compared "
                                             "baseline is validated on.")
    heldout_max: int = _opt(64, "--n-heldout-max", "Held-out pairs are doubled up to this many for the schedules "
                                                   "whose ranking against a front neighbour or a baseline they claim "
                                                   "to beat is not resolved (paired 95 % interval of the "
                                                   "difference contains 0); at most the prompt set's size.")
    profile_prompts: int = _opt(64, "--profile-prompts", "Train-side prompts the block-change profile averages "
                                                         "over (it places the recomputes of middleauto and "
                                                         "blockcaching masks; 8 prompts misplace the early ones: "
                                                         "docs/tail.md). Drawn from the train prompt pool, up to "
                                                         "its size; a resumed run keeps its stored profile.")
    screen: str = _opt("4", "--screen", "Multi-fidelity screening: score a candidate on this many train images "
                                          "first (comma-separated, cumulative) and stop once it provably cannot "
                                          "reach the front (exact: losses are >= 0); 'off' disables. Cost "
                                          "objective only.")
    tail_threshold: float = _opt(0.05, "--tail-threshold", "Loss above which an image counts as broken: reports, "
                                                           "schedule files and the front index give the share of "
                                                           "images over it beside mean, median, p90 and max.")
    metric: str = _opt("lpips-alex", "--metric", "Perceptual metric (falls back offline to stlpips-alex; the "
                                                 "metric used is recorded).")
    objective: str = _opt("cost", "--objective", "Second objective: cost (analytic MACs ratio) or latency "
                                                 "(measured; needs --latency measured).")
    objective_stat: str = _opt("mean", "--objective-stat", "Quality objective: the mean of the per-image train "
                                                          "losses, their p90, or cvar (the mean of the worst 10 % "
                                                          "of the images; with 8 images the worst one).")
    latency: str = _opt("analytic", "--latency", "analytic or measured.")
    max_quality: float | None = _opt(None, "--max-lpips", "Constraint: quality loss <= this.", default_text="none")
    min_speedup: float | None = _opt(None, "--min-speedup", "Constraint: speedup >= this (1/cost ratio under "
                                                            "--objective cost).", default_text="none")
    sampler: str = _opt("tpe", "--sampler", "Optuna sampler: tpe (multivariate, grouped: the spaces are "
                                            "conditional; the default, docs/search-efficiency.md says why), nsga2, "
                                            "gp or random.")
    population: int = _opt(24, "--population", "NSGA-II population size; TPE and GP start with min(this, 16) "
                                               "random trials after the warm start.")
    warm_start: str = _opt("baselines", "--warm-start", "First trials of a new study: baselines (every family's "
                                                        "heuristic baselines), crossed (those, then the baselines "
                                                        "on their front combined with the step-set baselines) or "
                                                        "grid (the baselines and a small Latin hypercube per "
                                                        "family, --population points in all).")
    seed: int | None = _opt(0, "--seed", "Sampler seed.")
    trials: int | None = _opt(1000, "--trials", "Stop when the study has this many finished trials (baselines "
                                                "and duplicates included).")
    timeout: float | None = _opt(330.0, "--timeout", "Stop starting trials after this many seconds; 0 = no limit.")
    storage: str | None = _opt(None, "--storage", "Optuna storage URL (postgresql://… for many hosts) or a "
                                                  "journal file path.", default_text="<run>/study.journal")
    executor: str = _opt("local", "--executor", "local (in-process) or ray (Ray Tune).")
    workers: int = _opt(2, "--workers", "Concurrent trials: local worker processes (1 = evaluate in this "
                                       "process) or Ray trials.")
    address: str | None = _opt(None, "--address", "Ray: address of an existing cluster (e.g. auto or "
                                                  "ray://host:10001).", default_text="start a local one")
    device: str = _opt("cpu", "--device", "cpu or cuda[:N].")
    prefix_cache_mb: int = _opt(512, "--prefix-cache-mb", "Memory per evaluating process for exact prefix "
                                                          "sharing: a candidate whose masks agree with an earlier "
                                                          "one's on its first steps resumes from that one's state "
                                                          "after them (bit-identical); 0 = off.")
    prompts_file: str | None = _opt(None, "--prompts", "Prompt file (text or YAML).",
                                    default_text="built-in prompts")
    out: str = _opt("artifacts/runs", "--out", "Directory of run directories.")

    IDENTITY = ("model", "num_steps", "scheduler", "guidance_scale", "n_train", "n_heldout", "metric", "objective",
                "objective_stat", "latency", "max_quality", "min_speedup", "prompts_file", "device")

    EVAL_FIELDS = {"model": "model", "device": "device", "scheduler": "scheduler",
                   "num_inference_steps": "num_steps", "guidance_scale": "guidance_scale", "n_train": "n_train",
                   "n_heldout": "n_heldout", "prompts_file": "prompts_file", "metric": "metric",
                   "latency": "latency", "prefix_cache_mb": "prefix_cache_mb"}
    """The evaluator's :class:`~cachesearch.evaluate.EvalConfig` fields these settings set, by setting name (the
    evaluator's held-out split holds up to ``--n-heldout-max`` pairs: validation starts on the first ``--n-heldout``
    and grows into the rest)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or self.name.startswith("."):
            raise SearchError(f"--name: expected a plain directory name like 'embedded-ddim20', got {self.name!r}")
        for f, lo in (("num_steps", 1), ("n_train", 1), ("n_heldout", 1), ("heldout_max", 1), ("profile_prompts", 1),
                      ("population", 2), ("workers", 1)):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise SearchError(f"{flag(f)}: expected an integer >= {lo}, got {v!r}")
        if self.trials is not None and (not isinstance(self.trials, int) or self.trials < 1):
            raise SearchError(f"--trials: expected a positive integer, got {self.trials!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise SearchError(f"--timeout: expected a positive number of seconds, got {self.timeout!r}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"--sampler: expected one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.warm_start not in WARM_STARTS:
            raise SearchError(f"--warm-start: expected one of {list(WARM_STARTS)}, got {self.warm_start!r}")
        if self.executor not in EXECUTORS:
            raise SearchError(f"--executor: expected one of {list(EXECUTORS)}, got {self.executor!r}")
        if self.latency not in LATENCY_MODES:
            raise SearchError(f"--latency: expected one of {list(LATENCY_MODES)}, got {self.latency!r}")
        if isinstance(self.tail_threshold, bool) or not isinstance(self.tail_threshold, (int, float)) or not (
                0 < self.tail_threshold < float("inf")):
            raise SearchError(f"--tail-threshold: expected a positive loss, got {self.tail_threshold!r}")
        if self.objective == "latency" and self.latency != "measured":
            raise SearchError("--objective latency needs --latency measured (analytic mode measures nothing)")
        try:
            self.objectives  # noqa: B018 - validates objective and constraints
            self.screening  # noqa: B018
        except ValueError as e:
            raise SearchError(str(e)) from None

    @property
    def objectives(self) -> Objectives:
        """The objectives and constraints of the study."""
        return Objectives(kind=self.objective, max_quality=self.max_quality, min_speedup=self.min_speedup,
                          stat=self.objective_stat)

    @property
    def screening(self) -> Screening | None:
        """Multi-fidelity screening (``None`` when off or under the latency objective)."""
        return None if self.objective != "cost" else Screening.parse(self.screen)

    @property
    def run_dir(self) -> Path:
        """``<out>/<name>``."""
        return Path(self.out).expanduser() / self.name

    def identity(self) -> dict[str, Any]:
        """The fields a resumed study must agree on (under their ``run.yaml`` keys)."""
        return {_key(f): getattr(self, f) for f in self.IDENTITY}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every setting, under its ``run.yaml`` key."""
        return {_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunSettings:
        """Inverse of :meth:`to_dict` (unknown keys from newer versions are ignored; settings stored before a
        setting existed get the value runs had then, see :data:`LEGACY`)."""
        by_key = {_key(f.name): f.name for f in fields(cls)}
        return cls(**{**LEGACY, **{by_key[k]: v for k, v in data.items() if k in by_key}})

    def merged(self, explicit: Mapping[str, Any]) -> RunSettings:
        """These (stored) settings with the explicitly given options (by field name) applied on top."""
        return replace(self, **{k: v for k, v in explicit.items() if v is not None})

    def eval_config(self, cache_dir: str | None = None) -> EvalConfig:
        """The evaluator's configuration for these settings (``cache_dir``: the reference cache, else
        EvalConfig's default). An invalid value raises :class:`SearchError` naming the option (``--scheduler``),
        not the EvalConfig field."""
        from ..evaluate import EvalConfig, EvalConfigError
        from ..evaluate._prompts import split_capacity

        kwargs: dict[str, Any] = {} if cache_dir is None else {"cache_dir": cache_dir}
        kwargs.update({ev: getattr(self, run) for ev, run in self.EVAL_FIELDS.items()})
        if self.heldout_max > self.n_heldout:  # the held-out split is the pool validation may grow into
            try:
                room = split_capacity(self.model, "heldout", self.prompts_file)
            except (OSError, ValueError):
                room = self.n_heldout  # an unreadable prompt file is reported when the evaluator reads it
            kwargs["n_heldout"] = max(self.n_heldout, min(self.heldout_max, room))
        try:
            return EvalConfig(**kwargs)
        except EvalConfigError as e:
            raise SearchError(option_names(str(e), eval_flags())) from e


LEGACY: dict[str, Any] = {"objective_stat": "mean"}
"""Settings a stored run may lack, with the value every run had before the setting existed (a run searched before
``--objective-stat`` minimised the mean, whatever today's default)."""


def _field(name: str) -> Field[Any]:
    return {f.name: f for f in fields(RunSettings)}[name]


def _key(name: str) -> str:
    return _field(name).metadata.get("key") or name


def flag(name: str) -> str:
    """The CLI flag of a setting (``num_steps`` → ``--steps``)."""
    return _field(name).metadata["flag"]


def default(name: str) -> Any:
    """The default of a setting (the single source of every default)."""
    f = _field(name)
    if f.default is MISSING:
        raise KeyError(f"setting {name!r} has no default")
    return f.default


def option_help(name: str, *, with_default: bool = True) -> str:
    """The help of a setting's CLI option, ending with its default (unless ``with_default`` is false: for an
    option whose default the CLI shows itself)."""
    f = _field(name)
    text = f.metadata["help"]
    if f.default is MISSING or not with_default:
        return text
    shown = f.metadata.get("default_text") or (f"{f.default:g}" if isinstance(f.default, float) else f.default)
    return f"{text} Default: {shown}."


def default_name(model: str, scheduler: str | None, num_steps: int) -> str:
    """Run name derived from model and sampler: ``embedded-ddim20``, ``arch-sd15-dpm30``."""
    base = model.removeprefix("path:").removeprefix("hub:").rstrip("/").replace("embedded:shapes", "embedded")
    base = base.replace(":", "-").replace("/", "-").strip("-.") or "model"
    return f"{base}-{(scheduler or 'default').lower()}{num_steps}"


def eval_flags() -> dict[str, str]:
    """The ``cachesearch run`` option of each EvalConfig field it sets (``num_inference_steps`` → ``--steps``)."""
    return {ev: flag(run) for ev, run in RunSettings.EVAL_FIELDS.items()} | {"cache_dir": "--cache-dir"}


_SET_FIELD = re.compile(r"(?:set )?EvalConfig\.(\w+)=('[^']*'|\S+?)(?: \((--[\w-]+)\))?(?=[\s,;)]|$)")
_FIELD_AND_FLAG = re.compile(r"EvalConfig\.(\w+) / (--[\w-]+)")
_FIELD = re.compile(r"EvalConfig\.(\w+)")


def option_names(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each ``EvalConfig.<field>`` that ``flags`` maps written as its command-line option:
    ``EvalConfig.scheduler: expected …`` → ``--scheduler: expected …``, ``set EvalConfig.guidance_scale=5``
    → ``pass --guidance-scale 5`` (fields without an option stay as they are)."""

    def assign(m: re.Match[str]) -> str:
        opt = flags.get(m.group(1)) or m.group(3)
        if opt is None:
            return m.group(0)
        value = m.group(2)
        if value.startswith("'") and value.endswith("'") and " " not in value:
            value = value[1:-1]
        return f"pass {opt} {value}" if m.group(0).startswith("set ") else f"{opt} {value}"

    message = _SET_FIELD.sub(assign, message)
    message = _FIELD_AND_FLAG.sub(lambda m: flags.get(m.group(1), m.group(2)), message)
    mapped = _FIELD.sub(lambda m: flags.get(m.group(1), m.group(0)), message)
    if mapped != message:
        mapped = mapped.replace(" or None, got ", ", got ")
    return mapped
