"""The fixed inputs every candidate of one evaluator is compared on, and the references they produce.

:class:`Fixtures` holds the two prompt sets, their initial latents, the one pipeline call that both
references and candidates go through (:meth:`Fixtures.generate_batch`), and the glue to the on-disk
reference cache (:mod:`._reference`). The latents of image ``i`` are ``torch.randn`` of one sample's latent
shape (the denoiser adapter's :meth:`~cachesearch.adapters.DenoiserAdapter.latent_shape`) from a
CPU generator seeded with the image's seed (what diffusers' ``randn_tensor`` draws for a per-image CPU
generator), cast to the pipeline's device and dtype, and passed as ``latents=``; stochastic samplers get
per-image CPU generators seeded ``seed + 2**32`` for their step noise. Reference and candidates use the same
batches, so an all-recompute schedule reproduces the reference bit for bit.

:func:`resolve_sampler` (in :mod:`._sampler`, re-exported here) turns the config's ``None`` defaults into the
reference sampler's guidance and image size, asking the adapter for the pipeline's default size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from cachesearch.schedule import ScheduleError

from ._config import EvalConfig, EvalConfigError
from ._errors import InvalidOutputError
from ._prompts import SPLITS, PromptSet, builtin_prompts, load_prompt_file
from ._reference import REFERENCE_FORMAT, ReferenceCache, ReferenceInfo, key_digest, weights_hash
from ._sampler import ReferenceSampler, resolve_sampler

if TYPE_CHECKING:
    from cachesearch.adapters import DenoiserAdapter

__all__ = [
    "LATENTS_RECIPE",
    "STEP_NOISE_OFFSET",
    "Fixtures",
    "ProgressFn",
    "ReferenceSampler",
    "reference_device",
    "resolve_sampler",
]

ProgressFn = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as work advances."""

STEP_NOISE_OFFSET = 1 << 32
"""Added to an image's seed for the generator of its sampler's step noise."""
LATENTS_RECIPE = "cpu-randn-per-seed@1"
"""How initial latents are drawn (part of every reference key)."""


ShardFn = Callable[[str, list[slice]], list[torch.Tensor]]
"""Builds the given image ranges of a split's reference and returns their images (in order)."""


def reference_device(device: torch.device) -> str:
    """The ``device`` field of a reference-cache key: ``"cpu"`` or ``"cuda:<device name>"``.

    Deliberately not :func:`cachesearch._util.device_description` (``"cuda: <name>"``, ``"cpu: <model> (<n>
    threads)"``): the key must stay the one existing caches were written with, and a CPU reference is shared
    across CPU models and thread counts.
    """
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


class Fixtures:
    """Prompt sets, initial latents and full-compute references of one pipeline and reference sampler.

    Args:
        config: prompt counts, prompt file, batch size and cache folder are read from it.
        pipe, denoiser: the pipeline and its denoiser (``denoiser``'s parameters give device and dtype).
        adapter: the denoiser's adapter (latent shape).
        source: normalised model source (selects the built-in prompts).
        fingerprint: architecture fingerprint of ``denoiser`` (part of every reference key).
        sampler: the resolved reference sampler.
        device: the device the pipeline runs on.
        progress: optional ``progress(stage, done, total)``.
    """

    def __init__(
        self,
        *,
        config: EvalConfig,
        pipe: Any,
        denoiser: torch.nn.Module,
        adapter: DenoiserAdapter,
        source: str,
        fingerprint: str,
        sampler: ReferenceSampler,
        device: torch.device,
        progress: ProgressFn | None = None,
    ) -> None:
        self.config = config
        self.pipe = pipe
        self.denoiser = denoiser
        self.adapter = adapter
        self.source = source
        self.fingerprint = fingerprint
        self.sampler = sampler
        self.device = device
        self._progress = progress
        self._cache = ReferenceCache(config.cache_dir)
        self._prompt_sets: dict[str, PromptSet] = {}
        self._latents: dict[str, torch.Tensor] = {}
        self._refs: dict[str, torch.Tensor] = {}
        self._ref_info: dict[str, ReferenceInfo] = {}
        self._range_refs: dict[tuple[str, int, int], torch.Tensor] = {}
        self._weights_hash: str | None = None

    def report_progress(self, stage: str, done: int, total: int) -> None:
        """Pass ``(stage, done, total)`` to the progress callback, if there is one."""
        if self._progress is not None:
            self._progress(stage, done, total)

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype of the denoiser."""
        return next(self.denoiser.parameters()).dtype

    # -- prompts and latents ----------------------------------------------------------------------------
    def prompt_set(self, split: str) -> PromptSet:
        """The prompts and seeds of ``split`` (``"train"`` or ``"heldout"``)."""
        if split not in SPLITS:
            raise EvalConfigError(f"split: expected one of {list(SPLITS)}, got {split!r}")
        if split not in self._prompt_sets:
            n = self.config.n_train if split == "train" else self.config.n_heldout
            if self.config.prompts_file is not None:
                ps = load_prompt_file(self.config.prompts_file, split=split, n=n)
            else:
                ps = builtin_prompts(self.source, split, n)
            self._prompt_sets[split] = ps
        return self._prompt_sets[split]

    def prompt_pool(self, split: str, n: int) -> PromptSet:
        """The first ``n`` prompts and seeds of ``split``'s pool (the prompt set ``split`` would be with ``n``
        images; it is a prefix of every larger one), capped at the pool's size. The block-change profile averages
        over more prompts than a candidate is scored on."""
        from ._prompts import split_capacity

        n = max(1, min(int(n), split_capacity(self.source, split, self.config.prompts_file)))
        if n <= len(self.prompt_set(split)):
            return self.prompt_set(split).take(n)
        if self.config.prompts_file is not None:
            return load_prompt_file(self.config.prompts_file, split=split, n=n)
        return builtin_prompts(self.source, split, n)

    def latents_for(self, seeds: tuple[int, ...] | list[int]) -> torch.Tensor:
        """Initial latents ``[N, *latent_shape]`` (float32, CPU) of these seeds, drawn as :meth:`latents` draws
        them."""
        shape = self.latent_shape()
        return torch.cat([torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of one image's (or clip's) initial latents at the reference size (from the denoiser's adapter)."""
        frames = {} if self.sampler.num_frames is None else {"frames": self.sampler.num_frames}
        shape = self.adapter.latent_shape(self.pipe, self.sampler.height, self.sampler.width, **frames)
        return tuple(int(d) for d in shape)

    def latents(self, split: str) -> torch.Tensor:
        """Initial latents ``[N, *latent_shape]`` (float32, CPU) of ``split``; image ``i`` depends only on its
        seed."""
        if split not in self._latents:
            self._latents[split] = self.latents_for(self.prompt_set(split).seeds)
        return self._latents[split]

    # -- generation -------------------------------------------------------------------------------------
    def reference_call(self) -> dict[str, Any]:
        """The pipeline arguments of every call at the reference's setting: size, guidance, frames (video) and the
        adapter's own."""
        return {
            "height": self.sampler.height,
            "width": self.sampler.width,
            "guidance_scale": self.sampler.guidance_scale,
            **({} if self.sampler.num_frames is None else {"num_frames": self.sampler.num_frames}),
            **self.adapter.call_kwargs(self.pipe),
        }

    def generate_batch(
        self, prompts: list[str], latents: torch.Tensor, seeds: list[int], kwargs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One pipeline call at the reference size and guidance, from ``latents`` with per-image step noise.

        Args:
            prompts: one prompt per image.
            latents: their initial latents (any device/dtype; cast to the pipeline's).
            seeds: their seeds (step-noise generators are seeded ``seed + 2**32``).
            kwargs: further pipeline arguments (``num_inference_steps`` or ``timesteps``).

        Returns:
            ``(images, final_latents)``: images ``[n, 3, H, W]`` (videos ``[n, F, 3, H, W]``) float32 on the CPU in
            [0, 1], and the latents after the last step (``None`` when the pipeline ran no step callback).
        """
        holder: dict[str, torch.Tensor] = {}

        def on_step_end(pipe: Any, i: int, t: Any, cb_kwargs: dict[str, Any]) -> dict[str, Any]:
            holder["latents"] = cb_kwargs["latents"]
            return cb_kwargs

        out = self.pipe(
            prompt=prompts,
            latents=latents.to(self.device, self.dtype),
            generator=[torch.Generator("cpu").manual_seed(s + STEP_NOISE_OFFSET) for s in seeds],
            output_type="pt",
            callback_on_step_end=on_step_end,
            **self.reference_call(),
            **kwargs,
        )
        pixels = out.frames if self.sampler.num_frames is not None else out.images
        return pixels.detach().to("cpu", torch.float32), holder.get("latents")

    def generate(
        self, split: str, kwargs: Mapping[str, Any], stage: str, images: slice | None = None, *,
        batch_size: int | None = None, around: Callable[[int], contextlib.AbstractContextManager[Any]] | None = None,
    ) -> torch.Tensor:
        """Images of the prompts of ``split`` (all, or the range ``images``), in batches of
        ``config.batch_size``, reported as ``stage``. Image ``i`` depends only on its prompt, latents and seed,
        so a range gives the same images as the whole set.

        ``batch_size`` overrides the config's (a runtime cache decides per call: it runs one image per call);
        ``around(first_image)`` is entered around each pipeline call (e.g. to count what ran in it).

        Raises:
            InvalidOutputError: an image or its final latents contain NaN/inf.
        """
        ps = self.prompt_set(split)
        latents = self.latents(split)
        first, n, _ = (images or slice(None)).indices(len(ps))
        bs = batch_size or self.config.batch_size
        out = []
        self.report_progress(stage, 0, n - first)
        for lo in range(first, n, bs):
            hi = min(lo + bs, n)
            with around(lo) if around is not None else contextlib.nullcontext():
                imgs, final = self.generate_batch(list(ps.prompts[lo:hi]), latents[lo:hi], list(ps.seeds[lo:hi]),
                                                  kwargs)
            bad = ~torch.isfinite(imgs).flatten(1).all(dim=1)
            if final is not None:
                bad |= ~torch.isfinite(final.detach().float()).flatten(1).all(dim=1).cpu()
            if bool(bad.any()):
                batches = -(-(n - first) // bs)
                where = f"images in batch {(lo - first) // bs + 1} of {batches}"
                raise InvalidOutputError(int(bad.sum()), hi - lo, where)
            out.append(imgs)
            self.report_progress(stage, hi - first, n - first)
        return torch.cat(out)

    # -- references --------------------------------------------------------------------------------------
    def check_no_schedule(self) -> None:
        """Raise :class:`~cachesearch.schedule.ScheduleError` when a schedule is applied to the denoiser:
        references, baselines and profiles must be full compute."""
        if getattr(self.denoiser, "_cachesearch_applied", None) is not None:
            raise ScheduleError(
                "a schedule is applied to the evaluator's pipeline; remove() it before computing references or "
                "baselines (they must be full compute)"
            )

    def weights_id(self) -> str:
        """Hash of the pipeline's weights (computed once)."""
        if self._weights_hash is None:
            self._weights_hash = weights_hash(self.pipe)
        return self._weights_hash

    def reference_key(self, split: str, images: slice | None = None) -> dict[str, Any]:
        """Everything the reference images of ``split`` (or of its range ``images``) depend on: the reference
        cache's key. A range's key is the key a split of just those prompts and seeds would have, so the first
        ``n`` images of a larger split share the cache entry of an ``n``-image split."""
        import diffusers

        sched = self.pipe.scheduler
        ps = self.prompt_set(split)
        if images is not None:
            first, stop, _ = images.indices(len(ps))
            ps = PromptSet(name=ps.name, prompts=ps.prompts[first:stop], seeds=ps.seeds[first:stop])
        return {
            "format": REFERENCE_FORMAT,
            "fingerprint": self.fingerprint,
            "weights": self.weights_id(),
            "pipeline": type(self.pipe).__name__,
            "scheduler": {"class": type(sched).__name__, "config": dict(sched.config)},
            "num_inference_steps": self.sampler.num_inference_steps,
            "guidance_scale": self.sampler.guidance_scale,
            "height": self.sampler.height,
            "width": self.sampler.width,
            **({} if self.sampler.num_frames is None else {"num_frames": self.sampler.num_frames}),
            "prompts": ps.digest(),
            "n_images": len(ps),
            "batch_size": self.config.batch_size,
            "latents": LATENTS_RECIPE,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": reference_device(self.device),
            "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
        }

    def build_reference(self, split: str) -> torch.Tensor:
        """Generate the full-compute images of ``split`` (no cache lookup).

        Raises:
            ScheduleError: a schedule is applied.
            RuntimeError: the full-compute model itself produced NaN/inf.
        """
        self.check_no_schedule()
        try:
            return self.generate(
                split, {"num_inference_steps": self.sampler.num_inference_steps}, f"reference ({split})"
            )
        except InvalidOutputError as e:
            raise RuntimeError(
                f"the full-compute reference of {self.source} produced NaN/inf ({e}); the model does not run "
                f"correctly in {self.dtype} on {self.device} (try EvalConfig.dtype='float32')"
            ) from e

    def shards(self, split: str) -> list[slice]:
        """The image ranges of ``split`` that :meth:`generate` runs as one pipeline call each (batch-aligned, so
        generating them apart gives the images of one :meth:`build_reference`)."""
        n, bs = len(self.prompt_set(split)), self.config.batch_size
        return [slice(lo, min(lo + bs, n)) for lo in range(0, n, bs)]

    def build_reference_shard(self, split: str, images: slice) -> torch.Tensor:
        """The full-compute images of one range of ``split`` (a worker's part of a sharded reference)."""
        self.check_no_schedule()
        return self.generate(split, {"num_inference_steps": self.sampler.num_inference_steps},
                             f"reference ({split}, images {images.start}-{images.stop})", images)

    def _merge_shards(self, split: str, shard: ShardFn) -> torch.Tensor:
        self.check_no_schedule()
        ranges = self.shards(split)
        parts = shard(split, ranges)
        if len(parts) != len(ranges) or any(p.shape[0] != r.stop - r.start for p, r in zip(parts, ranges)):
            raise RuntimeError(f"sharded reference ({split}): the workers returned {[p.shape[0] for p in parts]} "
                               f"images for ranges {[(r.start, r.stop) for r in ranges]}")
        return torch.cat([p.detach().to("cpu", torch.float32) for p in parts])

    def reference(self, split: str, shard: ShardFn | None = None) -> torch.Tensor:
        """Full-compute images [N, 3, H, W] in [0, 1] (float32, CPU) of ``split``, from disk when cached.

        ``shard(split, ranges) -> [images per range]``: when the reference must be built, build its ranges
        (:meth:`shards`) elsewhere (e.g. on Ray workers, with :meth:`build_reference_shard`) and merge them here;
        the merged tensor is stored once, atomically, under the same key.
        """
        if split not in self._refs:
            key = self.reference_key(split)
            build = (lambda: self.build_reference(split)) if shard is None else (
                lambda: self._merge_shards(split, shard))
            images, info = self._cache.get_or_build(key, build)
            self._refs[split] = images
            self._ref_info[split] = info
        return self._refs[split]

    def reference_range(self, split: str, first: int, stop: int) -> torch.Tensor:
        """The full-compute images ``[first, stop)`` of ``split``: a slice of the whole split's reference when it
        is in memory or cached on disk, else that range alone, generated in batches from ``first`` (as a candidate
        evaluated on that range is) and cached under its own key (:meth:`reference_key` with ``images``).

        Held-out validation grows its images in ranges: each range's references are built once, when first
        needed, and shared by every schedule and run that scores that range."""
        n = len(self.prompt_set(split))
        if split in self._refs or (first, stop) == (0, n):
            return self.reference(split)[first:stop]
        whole, _ = self._cache.load(self.reference_key(split))
        if whole is not None:
            self._refs[split] = whole
            self._ref_info[split] = ReferenceInfo(path=self._cache.paths(self.reference_key(split))[0],
                                                  digest=key_digest(self.reference_key(split)), hit=True)
            return whole[first:stop]
        key, part = (split, first, stop), slice(first, stop)
        if key not in self._range_refs:
            self._range_refs[key], _ = self._cache.get_or_build(
                self.reference_key(split, part), lambda: self.build_reference_shard(split, part))
        return self._range_refs[key]

    def reference_info(self, split: str) -> ReferenceInfo:
        """Where the reference of ``split`` came from (file, cache hit or rebuilt); computes it if needed."""
        self.reference(split)
        return self._ref_info[split]
