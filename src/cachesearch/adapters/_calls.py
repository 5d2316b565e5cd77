"""What a denoiser call is, read from its keyword arguments: a sampler step (of which CFG branch), or a call beside
the steps.

Most pipelines call their denoiser only for sampler steps, and name the CFG pass of a call with diffusers'
``cache_context("cond")`` / ``("uncond")``. A few also call it *beside* the steps to fill a KV cache that the step
calls then attend to, and say so in an argument of the call:

* Wan-Animate 2 (``WanAnimate2Transformer3DModel``): per clip segment, one reference pass
  ``kv_cache_mode="extract"`` before the segment's steps (each step then runs ``kv_cache_mode="cached"``); its CFG
  passes run outside any cache context and are told apart by ``is_uncondtion=False / True`` (diffusers' spelling).
* SANA-WM's refiner (``SanaWMLTX2RefinerTransformer3DModel``): ``kv_cache_mode="capture_pre_rope"`` once for the
  attention sink, and ``"inject_and_capture_post_rope"`` after each chunk's steps (the steps run ``"inject"``).

A family file registers such a denoiser class's :class:`CallRoles` (:func:`register_call_roles`); the runtime reads
them in the denoiser's forward pre-hook: one dict lookup and a comparison of a ``str`` or ``bool``, never a tensor,
so nothing syncs with the device.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CallRoles", "call_roles_of", "register_call_roles"]

_BRANCHES = ("cond", "uncond")
_MISSING = object()


@dataclass(frozen=True, kw_only=True)
class CallRoles:
    """How a denoiser's pipeline marks, in keyword arguments, what each call is.

    Attributes:
        argument: the argument whose value says whether a call is a sampler step (``"kv_cache_mode"``).
        side: values of ``argument`` that mark a call beside the steps (a KV-cache prefill or capture): it is no
            step of the schedule and runs uncached.
        branch_argument: the argument that names the CFG pass of a step call made outside any ``cache_context``
            (``"is_uncondtion"``), or ``None``.
        branches: ``(value, branch)`` pairs: the pass (``"cond"`` / ``"uncond"``) a value of ``branch_argument``
            names.
        why: what the side calls are, for documentation and messages.
    """

    argument: str
    side: tuple[str, ...]
    branch_argument: str | None = None
    branches: tuple[tuple[bool | str, str], ...] = ()
    why: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.argument, str) or not self.argument:
            raise ValueError("CallRoles.argument: expected an argument name such as 'kv_cache_mode'")
        if not isinstance(self.side, tuple) or not self.side or not all(isinstance(v, str) for v in self.side):
            raise ValueError(f"CallRoles.side: expected a non-empty tuple of {self.argument} values, got {self.side!r}")
        if (self.branch_argument is None) != (not self.branches):
            raise ValueError("CallRoles.branches: give branch_argument and its (value, branch) pairs together")
        for pair in self.branches:
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], bool | str)
                    and pair[1] in _BRANCHES):
                raise ValueError(f"CallRoles.branches: expected (value, 'cond' | 'uncond') pairs, got {pair!r}")

    def reader(self, forward: Callable) -> Callable[[tuple, Mapping[str, Any]], tuple[bool, str | None]]:
        """A function ``(args, kwargs) -> (side call?, branch or None)`` for calls of ``forward`` (the denoiser's
        forward, whose signature gives the arguments' positions when they are passed positionally)."""
        names = list(inspect.signature(forward).parameters)
        if names and names[0] == "self":
            names = names[1:]
        side_at = names.index(self.argument) if self.argument in names else None
        branch_at = names.index(self.branch_argument) if self.branch_argument in names else None
        side, argument, branch_argument = frozenset(self.side), self.argument, self.branch_argument
        branches = dict(self.branches)

        def value(args: tuple, kwargs: Mapping[str, Any], name: str | None, at: int | None) -> Any:
            v = kwargs.get(name, _MISSING) if name is not None else _MISSING
            if v is _MISSING and at is not None and len(args) > at:
                v = args[at]
            return v if isinstance(v, bool | str) else None  # never compare a tensor: no device sync

        def read(args: tuple, kwargs: Mapping[str, Any]) -> tuple[bool, str | None]:
            if value(args, kwargs, argument, side_at) in side:
                return True, None
            if branch_argument is None:
                return False, None
            return False, branches.get(value(args, kwargs, branch_argument, branch_at))

        return read


_ROLES: dict[str, CallRoles] = {}


def register_call_roles(class_name: str, roles: CallRoles) -> None:
    """Register how the pipelines of the denoiser class called ``class_name`` (subclasses inherit it) mark their
    calls beside the sampler steps and their CFG passes."""
    if not isinstance(roles, CallRoles):
        raise TypeError(f"register_call_roles({class_name!r}, ...): expected CallRoles, got {type(roles).__name__}")
    _ROLES[class_name] = roles


def call_roles_of(denoiser: Any) -> CallRoles | None:
    """The :class:`CallRoles` registered for ``denoiser``'s class or its nearest base class, else ``None`` (every
    call is a step, its CFG pass named by ``cache_context`` alone)."""
    for cls in type(denoiser).__mro__:
        roles = _ROLES.get(cls.__name__)
        if roles is not None:
            return roles
    return None
