"""What a run command decides before anything heavy loads (no torch, no model): the settings of a new or
resumed run, whether a run is finished, where an existing run is, and the checks of its storage and Ray
cluster. ``cachesearch run`` calls these first, so a wrong option fails in one line within a second."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .settings import RunSettings, SearchError, default, default_name
from .storage import open_storage, storage_spec
from .study import load_settings, resume_refused, settings_conflicts
from .trials import finished_count

__all__ = ["find_run", "finished_run", "preflight", "resolve_settings"]


def resolve_settings(name: str | None, explicit: dict[str, Any], out: str | None = None) -> RunSettings:
    """Settings of a run: a resumed run's stored settings with explicit options on top, else defaults + options.

    ``explicit`` holds the options the user gave, by :class:`RunSettings` field name (others None).
    """
    out = default("out") if out is None else out
    explicit = {k: v for k, v in explicit.items() if v is not None}
    if name is None:
        name = default_name(explicit.get("model", default("model")), explicit.get("scheduler"),
                            explicit.get("num_steps", default("num_steps")))
    run_dir = Path(out).expanduser() / name
    stored = load_settings(run_dir)
    if stored is not None:
        settings = stored.merged({**explicit, "name": name, "out": out})
        problems = settings_conflicts(stored, settings)
        if problems:  # refused before anything is loaded (the study checks the same again when it opens)
            raise resume_refused(name, problems)
        return settings
    return RunSettings(name=name, out=out, **explicit)


def finished_run(settings: RunSettings) -> int | None:
    """The finished trials of an existing run whose study already holds ``--trials`` of them, else None (a new
    run, one with trials left, or no trial budget). Reads the study only: no model is loaded, nothing created."""
    if settings.trials is None or load_settings(settings.run_dir) is None:
        return None
    import optuna

    spec = storage_spec(settings)
    if "://" not in spec and not Path(spec).is_file():
        return None
    try:
        study = optuna.load_study(study_name=settings.name, storage=open_storage(spec))
    except KeyError:  # the storage holds no study of this name yet
        return None
    done = finished_count(study)
    return done if done >= settings.trials else None


def find_run(name: str, out: str | None = None) -> Path:
    """The folder of the existing run ``name`` under ``out``; nothing is created.

    Raises:
        SearchError: there is no such run (the message lists the runs there).
    """
    out = default("out") if out is None else out
    run_dir = Path(out).expanduser() / name
    if not (run_dir / "run.yaml").is_file():
        known = sorted(p.parent.name for p in Path(out).expanduser().glob("*/run.yaml"))
        raise SearchError(f"no run named {name!r} under {out} (runs: {', '.join(known) or 'none'})")
    return run_dir


def preflight(settings: RunSettings) -> None:
    """Check what can fail before the model loads: a ``--storage`` URL must open, a Ray ``--address`` must
    answer (:class:`SearchError`, one line, a password never shown)."""
    if settings.storage and "://" in settings.storage:
        open_storage(settings.storage)
    if settings.executor == "ray" and settings.address:
        from .ray_address import check_ray_address

        check_ray_address(settings.address)
