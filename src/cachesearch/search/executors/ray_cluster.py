"""Joining or starting the Ray cluster of a run, and building reference images on its workers.

:func:`shard_references` makes the full-compute references of a Ray run on the cluster's workers, one batch
per task in parallel, and the driver merges them into the on-disk cache once (an atomic write of the merged
tensor under the reference's key, inside the cache's lock): no worker writes the cache and no partial file is
ever visible. Every worker later reads the merged file (its evaluator's ``reference`` is a cache hit).
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING, Any

import torch

from .worker import WORKER, prebuilt_key, quiet_worker

if TYPE_CHECKING:
    from ...evaluate import EvalConfig, Evaluator
    from ..settings import RunSettings

__all__ = ["STARTED", "init_ray", "own_token", "shard_references"]

STARTED: dict[str, bool] = {}
"""``by_references``: :func:`shard_references` started Ray in this process (the executor shuts it down)."""


_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def own_token() -> None:
    """Give the local cluster this process starts a token of its own, in the environment its processes inherit:
    Ray then neither writes ``~/.ray/auth_token`` (mode 0644) nor prints "Token authentication is enabled for
    this Ray cluster". Authentication settings the user made (any ``RAY_AUTH_*`` variable) are kept."""
    if any(v in os.environ for v in _AUTH_VARS):
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:  # Ray read its authentication settings when it was imported: refresh them, as ray.init itself does
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # another Ray version: it reads the environment at ray.init
        pass


def init_ray(settings: RunSettings) -> bool:
    """Join ``--address`` or start a local Ray with ``--workers`` CPUs (and the local GPUs); ``True`` when this
    call started it (the caller shuts it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                              "log_to_driver": False, "configure_logging": True}
    if settings.address:
        kwargs["address"] = settings.address
    else:
        own_token()
        kwargs["num_cpus"] = settings.workers
        if settings.device.startswith("cuda") and torch.cuda.is_available():
            kwargs["num_gpus"] = torch.cuda.device_count()
    ray.init(**kwargs)
    return True


def _shard(config: EvalConfig, split: str, start: int, stop: int, threads: int) -> torch.Tensor:
    """Worker task: the full-compute images ``start:stop`` of ``split`` (evaluator cached per process)."""
    from ...evaluate import Evaluator

    torch.set_num_threads(max(1, threads))
    key = prebuilt_key(config)
    ev = WORKER.get(key)
    if ev is None:
        quiet_worker()
        ev = WORKER[key] = Evaluator(config)
    return ev.fixtures.build_reference_shard(split, slice(start, stop))


def shard_references(settings: RunSettings, evaluator: Evaluator, splits: tuple[str, ...] = ("train", "heldout")
                     ) -> dict[str, int]:
    """Make the references of ``splits`` on the Ray cluster (when not cached); returns the tasks per split.

    Ray is started (or joined) here and left running for the trial loop (:func:`~.ray.run_ray` shuts down
    what :func:`init_ray` started).
    """
    import ray

    if init_ray(settings):
        STARTED["by_references"] = True
    use_gpu = settings.device.startswith("cuda") and ray.cluster_resources().get("GPU", 0) >= 1
    task = ray.remote(num_cpus=1, num_gpus=1 if use_gpu else 0, max_retries=2)(_shard)
    config = settings.eval_config(cache_dir=os.path.abspath(os.path.expanduser(evaluator.config.cache_dir)))
    fixtures = evaluator.fixtures
    pending: dict[str, list[Any]] = {}
    for split in splits:  # every missing split's tasks at once: train and held-out run side by side
        images, _ = fixtures._cache.load(fixtures.reference_key(split))
        if images is None:
            pending[split] = [task.remote(config, split, r.start, r.stop, 1) for r in fixtures.shards(split)]

    def shard(split: str, ranges: list[slice]) -> list[torch.Tensor]:
        refs = pending.get(split) or [task.remote(config, split, r.start, r.stop, 1) for r in ranges]
        return ray.get(refs)

    for split in splits:
        evaluator.reference(split, shard)
    return {split: len(refs) for split, refs in pending.items()}
