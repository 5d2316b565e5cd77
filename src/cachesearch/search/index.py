"""The front index ``schedules/index.yaml`` as typed rows: exported schedules (:class:`ExportEntry`), validated
baselines (:class:`BaselineRow`), the export as a whole (:class:`ExportResult`) and reading it back
(:func:`load_export`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..schedule import LossStats, TailMetrics
from ..schedule._yaml import read_yaml_file
from ..schedule._yaml_metrics import parse_stats, stats_dict
from .family_table import FamilyBest

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["INDEX_FORMAT", "BaselineRow", "ExportEntry", "ExportResult", "QualityPair", "load_export"]

INDEX_FORMAT = "cachesearch/index@1"


@dataclass(frozen=True)
class QualityPair:
    """A quality-loss value on the train and the held-out prompts (``metric``: which distance)."""

    train: float | None
    heldout: float | None
    metric: str | None = None


@dataclass(frozen=True)
class ExportEntry:
    """One exported schedule file of the front (a row of ``index.yaml``'s ``schedules``).

    ``objective`` is the study's second objective (cost ratio, or latency ratio under ``--objective latency``);
    ``baseline``/``baseline_kind`` name the baseline the trial was, if it was one; ``speedup`` is measured
    (``--latency measured``) or None: the analytic figure is ``cost_ratio`` (indexes written before this said
    ``1 / cost_ratio`` there). ``kind``: ``static`` (masks) or ``runtime`` (a library's own cache: its cost was
    counted per image, ``cost_heldout`` on the held-out images).
    """

    file: str
    name: str
    trial: int
    baseline: str | None
    baseline_kind: str | None
    policy: dict[str, Any]
    quality: QualityPair
    objective: float
    cost_ratio: float | None
    speedup: float | None
    latency_ms: float | None
    accuracy: QualityPair
    tail: TailMetrics | None = None
    kind: str = "static"
    cost_heldout: float | None = None

    def stats(self, split: str) -> LossStats | None:
        """The per-image loss distribution on ``split`` (``None`` without one)."""
        return None if self.tail is None else getattr(self.tail, split)

    def to_dict(self) -> dict[str, Any]:
        """The ``index.yaml`` form."""
        d = asdict(self)
        d["accuracy"].pop("metric")
        d["quality"] = {"metric": self.quality.metric, "train": self.quality.train, "heldout": self.quality.heldout}
        d.pop("tail")
        if self.tail is not None:
            d["tail"] = {k: stats_dict(v) for k in ("train", "heldout") if (v := getattr(self.tail, k)) is not None}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExportEntry:
        """Inverse of :meth:`to_dict` (also reads indexes written before ``objective``/``baseline_kind``/``tail``)."""
        q, acc = d["quality"], d.get("accuracy") or {}
        objective = d.get("objective", d.get("cost_ratio"))
        tail = d.get("tail")
        return cls(
            file=d["file"], name=d["name"], trial=d["trial"], baseline=d.get("baseline"),
            baseline_kind=d.get("baseline_kind"), policy=dict(d.get("policy") or {}),
            quality=QualityPair(train=q.get("train"), heldout=q.get("heldout"), metric=q.get("metric")),
            objective=math.inf if objective is None else float(objective), cost_ratio=d.get("cost_ratio"),
            speedup=d.get("speedup"), latency_ms=d.get("latency_ms"),
            accuracy=QualityPair(train=acc.get("train"), heldout=acc.get("heldout")),
            tail=None if not tail else TailMetrics(train=parse_stats("tail.train", tail.get("train")),
                                                   heldout=parse_stats("tail.heldout", tail.get("heldout"))),
            kind=d.get("kind", "static"), cost_heldout=d.get("cost_heldout"),
        )


@dataclass(frozen=True)
class BaselineRow:
    """An evaluated baseline trial: its kind (the family that proposed it), its policy, train quality and
    objective (``cost``), and once validated its held-out quality (a row of ``index.yaml``'s
    ``baselines.validated``). ``best_branch``: the best-branch DeepCache baseline of its interval."""

    name: str
    kind: str | None
    trial: int
    state: str
    policy: dict[str, Any] = field(default_factory=dict)
    quality: float | None = None
    cost: float | None = None
    speedup: float | None = None
    mask_key: str | None = None
    reason: str | None = None
    heldout: float | None = None
    best_branch: bool = False
    heldout_stats: LossStats | None = None

    @property
    def done(self) -> bool:
        """Whether it completed (has train quality and cost)."""
        return self.quality is not None and self.cost is not None

    def to_dict(self) -> dict[str, Any]:
        """The ``index.yaml`` form (unset optional fields left out)."""
        d = asdict(self)
        d["heldout_stats"] = None if self.heldout_stats is None else stats_dict(self.heldout_stats)
        return {k: v for k, v in d.items() if k in ("name", "kind", "trial", "state", "heldout")
                or (v is not None and v is not False)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BaselineRow:
        names = {f.name for f in fields(cls)}
        row = {k: v for k, v in d.items() if k in names}
        row["heldout_stats"] = parse_stats("heldout_stats", d.get("heldout_stats"))
        return cls(**row)


@dataclass
class ExportResult:
    """What an export wrote."""

    schedules_dir: Path
    index_path: Path
    entries: list[ExportEntry]
    front_trials: list[FrozenTrial]
    baselines: list[BaselineRow] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    metric: str | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)
    """The rankings the export states, judged on paired held-out differences (see :mod:`.validation`)."""
    heldout_images: int = 0
    """Held-out images scored by this export (cached results excluded)."""
    families: list[FamilyBest] = field(default_factory=list)
    """The best schedule of each family at a few budgets (:mod:`.family_table`)."""


def load_export(run_dir: Path) -> ExportResult:
    """The last export of a run, read back from ``schedules/index.yaml`` (raises FileNotFoundError if none)."""
    index_path = Path(run_dir) / "schedules" / "index.yaml"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: the run has not been exported; run `cachesearch export --name "
                                f"{Path(run_dir).name}` first")
    doc = read_yaml_file(index_path, what="front index", max_bytes=16 << 20)
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise ValueError(f"{index_path}: format: expected {INDEX_FORMAT!r}")
    return ExportResult(schedules_dir=index_path.parent, index_path=index_path,
                        entries=[ExportEntry.from_dict(e) for e in doc["schedules"]], front_trials=[],
                        baselines=[BaselineRow.from_dict(r) for r in doc.get("baselines", {}).get("validated", [])],
                        rejected=list(doc.get("rejected", [])), metric=doc.get("metric"),
                        claims=list((doc.get("validation") or {}).get("claims", [])),
                        families=[FamilyBest.from_dict(r) for r in doc.get("families", [])])
