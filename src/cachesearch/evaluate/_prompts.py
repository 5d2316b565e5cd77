"""Prompt sets: a train set to search on and a held-out set to validate on, with different prompts AND seeds.

Built-in sets
-------------
``embedded:shapes``, ``embedded:scenes``
    The model's procedural captions (``a {color} {shape} on a {color} background``: 360; scenes'
    ``a {color} {shape} and a {color} {shape} on a {color} background``: 11,520) are shuffled once with a
    fixed generator; the train split draws from the first half of that order and the held-out split from the
    second half, so the two are disjoint for every ``n`` and a smaller set is a prefix of a larger one.
other models
    A fixed list of 48 generic photographic prompts, 24 per split. Use a prompt file for anything serious.

Seeds are ``2_000_000 + i`` (train) and ``3_000_000 + i`` (held-out): disjoint from each other, from the
embedded model's quality-gate seeds (``1_000_000 + i``) and from its training noise.

Prompt files
------------
Plain text: one prompt a line; blank lines and lines starting with ``#`` are ignored. The prompts are split
by alternation: even lines (0, 2, ...) train, odd lines held-out.

YAML: either a list of prompts (split like a text file) or a mapping with the keys ``train`` and ``heldout``,
each a list whose items are a prompt string or ``{prompt: str, seed: int}``. Items without a seed get the
default seeds above. Prompts and seeds must not be shared between the splits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cachesearch.embedded import embedded_name

__all__ = [
    "GENERIC_PROMPTS",
    "SEED_BASES",
    "SPLITS",
    "PromptFileError",
    "PromptSet",
    "builtin_prompts",
    "load_prompt_file",
    "prompt_sets_disjoint",
    "split_capacity",
]

SPLITS: tuple[str, ...] = ("train", "heldout")
"""The two prompt splits."""

SEED_BASES: dict[str, int] = {"train": 2_000_000, "heldout": 3_000_000}
"""Default generator seed of image ``i`` of a split is ``SEED_BASES[split] + i``."""

_SHUFFLE_SEED = 20240611  # fixed order of the embedded model's captions (changing it changes every reference)
_MAX_SEED = 2**63 - 1

GENERIC_PROMPTS: tuple[str, ...] = (
    "a photograph of an astronaut riding a horse",
    "a red vintage car parked on a cobblestone street",
    "a bowl of ramen with a soft-boiled egg, top view",
    "a lighthouse on a rocky coast at sunset",
    "a golden retriever puppy playing in autumn leaves",
    "a futuristic city skyline at night with neon lights",
    "an oil painting of a farmhouse in a wheat field",
    "a close-up portrait of an old fisherman with a beard",
    "a snowy mountain cabin under the northern lights",
    "a stack of pancakes with blueberries and maple syrup",
    "a watercolor illustration of a fox in a forest",
    "a steam locomotive crossing a stone bridge",
    "a cup of coffee on a wooden table by a rainy window",
    "a hot air balloon floating over green hills",
    "a tabby cat sleeping on a stack of books",
    "a sailboat on a calm lake at dawn",
    "a medieval castle on a hill surrounded by fog",
    "a bouquet of sunflowers in a blue ceramic vase",
    "an aerial view of a winding river through a canyon",
    "a robot reading a newspaper in a cafe",
    "a field of lavender under a clear summer sky",
    "a street market with colorful fruit stalls",
    "a pencil sketch of a hummingbird feeding on a flower",
    "a desert highway with a lone motorcycle",
    "a koi pond with lily pads and a small wooden bridge",
    "a cozy living room with a fireplace and a reading chair",
    "a macro photograph of a dew drop on a leaf",
    "a panda eating bamboo in a misty forest",
    "a glass skyscraper reflecting the clouds",
    "a plate of sushi on a black slate board",
    "a children's book illustration of a dragon and a knight",
    "a tropical beach with palm trees and turquoise water",
    "a busy train station platform in the morning",
    "a mug of hot chocolate with marshmallows",
    "a wolf howling at the full moon",
    "a greenhouse full of tropical plants",
    "a cyberpunk alley with rain and glowing signs",
    "a loaf of freshly baked bread on a cutting board",
    "an owl perched on a branch at twilight",
    "a vintage typewriter on a writer's desk",
    "a waterfall in a lush green jungle",
    "a bicycle leaning against a brick wall",
    "a still life of apples and a wine bottle",
    "a polar bear on an ice floe",
    "a japanese garden with a red maple tree",
    "an old library with tall wooden bookshelves",
    "a scuba diver next to a coral reef",
    "a windmill in a tulip field in spring",
)


class PromptFileError(ValueError):
    """A prompt file is missing, malformed, or its splits overlap; the message names the file and the fix."""


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    return split


def _check_n(n: Any, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}: expected a positive integer (number of images), got {n!r}")
    return n


@dataclass(frozen=True, kw_only=True)
class PromptSet:
    """Prompts and the generator seed of each image (one image per entry; prompts may repeat)."""

    name: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("PromptSet.name: expected a non-empty string")
        prompts = tuple(self.prompts)
        seeds = tuple(self.seeds)
        if not prompts:
            raise ValueError(f"PromptSet {self.name!r}: expected at least one prompt")
        if len(prompts) != len(seeds):
            raise ValueError(f"PromptSet {self.name!r}: {len(prompts)} prompts but {len(seeds)} seeds; need one each")
        for i, p in enumerate(prompts):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"PromptSet {self.name!r}: prompts[{i}] must be a non-empty string, got {p!r}")
        for i, s in enumerate(seeds):
            if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= _MAX_SEED:
                raise ValueError(f"PromptSet {self.name!r}: seeds[{i}] must be an integer in [0, 2**63), got {s!r}")
        object.__setattr__(self, "prompts", prompts)
        object.__setattr__(self, "seeds", seeds)

    def __len__(self) -> int:
        return len(self.prompts)

    def digest(self) -> str:
        """``"sha256:..."`` of the prompts and seeds (the name is not part of it)."""
        text = json.dumps({"prompts": list(self.prompts), "seeds": list(self.seeds)}, ensure_ascii=False)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def take(self, n: int) -> PromptSet:
        """The first ``n`` entries (raises if there are fewer)."""
        _check_n(n)
        if n > len(self):
            raise ValueError(f"prompt set {self.name!r} has {len(self)} prompts, {n} were asked for")
        return PromptSet(name=self.name, prompts=self.prompts[:n], seeds=self.seeds[:n])


def _embedded_order(model_source: str) -> list[str]:
    import numpy as np

    from cachesearch.embedded import embedded_package

    captions = [c.text() for c in embedded_package(model_source).all_captions()]
    order = np.random.default_rng(_SHUFFLE_SEED).permutation(len(captions))
    return [captions[int(i)] for i in order]


def builtin_prompts(model_source: str, split: str, n: int) -> PromptSet:
    """The built-in prompt set of ``split`` (``"train"`` or ``"heldout"``) with ``n`` images.

    ``model_source`` is the loader's normalised source (``"embedded:shapes"``, ``"arch:sd15"``, ...): the
    embedded model gets procedural captions, every other model a generic list (see the module docstring).
    Train and held-out sets never share a prompt or a seed.
    """
    _check_split(split)
    _check_n(n)
    embedded = embedded_name(model_source)
    if embedded is not None:
        pool = _embedded_order(model_source)
        half = len(pool) // 2
        prompts = pool[:half] if split == "train" else pool[half:]
        name = f"embedded-{embedded}-{split}"
    else:
        half = len(GENERIC_PROMPTS) // 2
        prompts = list(GENERIC_PROMPTS[:half] if split == "train" else GENERIC_PROMPTS[half:])
        name = f"generic-{split}"
    if n > len(prompts):
        raise ValueError(
            f"n: the built-in {split} prompts for {model_source!r} have {len(prompts)} distinct prompts, {n} were "
            f"asked for; lower n or give a prompt file (EvalConfig.prompts_file / --prompts)"
        )
    base = SEED_BASES[split]
    return PromptSet(name=name, prompts=tuple(prompts[:n]), seeds=tuple(base + i for i in range(n)))


def _entries(path: Path, key: str, items: Any) -> list[tuple[str, int | None]]:
    if not isinstance(items, list) or not items:
        raise PromptFileError(f"{path}: {key}: expected a non-empty list of prompts")
    out: list[tuple[str, int | None]] = []
    for i, item in enumerate(items):
        where = f"{path}: {key}[{i}]"
        if isinstance(item, str):
            prompt, seed = item, None
        elif isinstance(item, dict):
            extra = set(item) - {"prompt", "seed"}
            if extra or "prompt" not in item:
                raise PromptFileError(
                    f"{where}: expected a string or {{prompt: str, seed: int}}, got keys {sorted(item)}"
                )
            prompt, seed = item["prompt"], item.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MAX_SEED):
                raise PromptFileError(f"{where}.seed: expected an integer in [0, 2**63), got {seed!r}")
        else:
            raise PromptFileError(f"{where}: expected a string or {{prompt: str, seed: int}}, got {item!r}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f"{where}: expected a non-empty prompt string, got {prompt!r}")
        out.append((prompt.strip(), seed))
    return out


def _read_prompt_file(path: Path) -> dict[str, list[tuple[str, int | None]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PromptFileError(f"cannot read prompt file {path}: {e}") from e
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        from cachesearch.schedule._yaml import UntrustedYAMLError, strict_yaml_load

        try:
            data = strict_yaml_load(text)
        except UntrustedYAMLError as e:
            raise PromptFileError(f"{path}: {e}") from e
        except yaml.YAMLError as e:
            raise PromptFileError(f"{path}: not valid YAML: {e}") from e
        if isinstance(data, dict):
            extra = set(data) - set(SPLITS)
            missing = set(SPLITS) - set(data)
            if extra or missing:
                raise PromptFileError(
                    f"{path}: expected exactly the keys 'train' and 'heldout' (or a plain list of prompts); "
                    f"unknown {sorted(extra)}, missing {sorted(missing)}"
                )
            return {s: _entries(path, s, data[s]) for s in SPLITS}
        if not isinstance(data, list):
            raise PromptFileError(f"{path}: expected a list of prompts or a mapping with 'train' and 'heldout'")
        entries = _entries(path, "prompts", data)
    else:
        lines = [ln.strip() for ln in text.splitlines()]
        entries = [(ln, None) for ln in lines if ln and not ln.startswith("#")]
    if len(entries) < 2:
        raise PromptFileError(f"{path}: needs at least 2 prompts (one train, one held-out), found {len(entries)}")
    return {"train": entries[0::2], "heldout": entries[1::2]}


def load_prompt_file(path: str | Path, *, split: str = "train", n: int | None = None) -> PromptSet:
    """Read one split of a prompt file (text or YAML; see the module docstring).

    Args:
        path: ``.txt`` (one prompt a line) or ``.yaml``/``.yml``.
        split: ``"train"`` or ``"heldout"``.
        n: number of images; default all prompts of the split. Asking for more than the split has raises.

    Raises:
        FileNotFoundError: no such file.
        PromptFileError: malformed file, too few prompts, or train and held-out sharing a prompt or a seed.
    """
    _check_split(split)
    p = Path(path).expanduser()
    splits = _read_prompt_file(p)
    resolved: dict[str, tuple[list[str], list[int]]] = {}
    for s, entries in splits.items():
        base = SEED_BASES[s]
        resolved[s] = ([e[0] for e in entries], [base + i if e[1] is None else e[1] for i, e in enumerate(entries)])
    shared_prompts = set(resolved["train"][0]) & set(resolved["heldout"][0])
    if shared_prompts:
        raise PromptFileError(
            f"{p}: the held-out split must use different prompts from train; shared: {sorted(shared_prompts)[:3]}"
        )
    shared_seeds = set(resolved["train"][1]) & set(resolved["heldout"][1])
    if shared_seeds:
        raise PromptFileError(f"{p}: train and held-out share seeds {sorted(shared_seeds)[:5]}; give different seeds")
    prompts, seeds = resolved[split]
    if n is not None:
        _check_n(n)
        if n > len(prompts):
            raise PromptFileError(
                f"{p}: the {split} split has {len(prompts)} prompts but {n} images were asked for; add prompts or "
                f"lower n (--n-{'train' if split == 'train' else 'heldout'})"
            )
        prompts, seeds = prompts[:n], seeds[:n]
    return PromptSet(name=f"{p.stem}-{split}", prompts=tuple(prompts), seeds=tuple(seeds))


def split_capacity(model_source: str, split: str, prompts_file: str | Path | None = None) -> int:
    """How many images the ``split`` of the built-in prompts of ``model_source`` (or of ``prompts_file``) can
    hold: its distinct prompts. A set of ``n`` images is always the first ``n`` of that many."""
    _check_split(split)
    if prompts_file is not None:
        return len(_read_prompt_file(Path(prompts_file).expanduser())[split])
    if embedded_name(model_source) is not None:
        pool = len(_embedded_order(model_source))
        return pool // 2 if split == "train" else pool - pool // 2
    half = len(GENERIC_PROMPTS) // 2
    return half if split == "train" else len(GENERIC_PROMPTS) - half


def prompt_sets_disjoint(a: PromptSet, b: PromptSet) -> bool:
    """True when two sets share neither a prompt nor a seed."""
    return not (set(a.prompts) & set(b.prompts)) and not (set(a.seeds) & set(b.seeds))
