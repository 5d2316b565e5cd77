"""Parameters of a search space: their specification in a space file and their concrete Optuna distributions.

A space file gives each parameter as a constant, a range or a list of choices (:class:`IntParam`,
:class:`FloatParam`, :class:`ChoiceParam`, parsed by :meth:`Fields.int` …). Resolved against one model, every
parameter becomes a :class:`Dist`: one Optuna distribution under a fixed name (``deepcache.interval``) that a
trial is asked for.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..._util import is_num

__all__ = [
    "ChoiceParam",
    "Dist",
    "Fields",
    "FloatParam",
    "IntParam",
    "SpaceError",
    "Trial",
    "is_int",
    "is_num",
]


class SpaceError(ValueError):
    """A search-space file is invalid or does not fit the model; the message names the file and field."""


class Trial(Protocol):
    """The part of ``optuna.Trial`` / ``optuna.trial.FixedTrial`` a space uses."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float: ...

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


def is_int(v: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(v, int) and not isinstance(v, bool)


# -- what a space file says --------------------------------------------------------------------------------
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


class Fields:
    """Parses the values of one space file; every error names the file (``source``) and the field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> SpaceError:
        return SpaceError(f"{self.source}: {path}: {message}")

    def mapping(self, path: str, value: Any, required: set[str] | frozenset[str],
                optional: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """``value`` as a dict with exactly the ``required`` keys and some of the ``optional`` ones."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected a mapping with keys {sorted(required | optional)}, got {value!r}")
        keys = {str(k) for k in value}
        missing = required - keys
        if missing:
            raise self.error(path, f"missing required key(s) {sorted(missing)}")
        unknown = keys - required - optional
        if unknown:
            raise self.error(path, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(required | optional)}")
        return {str(k): v for k, v in value.items()}

    def section(self, path: str, value: Any, defaults: Mapping[str, Any],
                required: frozenset[str] = frozenset()) -> dict[str, Any]:
        """A family's section: the file's keys over ``defaults`` (whose keys are the allowed ones)."""
        if value is None:
            value = {}
        if isinstance(value, Mapping):
            value = {**defaults, **value}
        return self.mapping(path, value, set(required), set(defaults))

    def int(self, path: str, value: Any, *, lo: int, symbols: tuple[str, ...] = ()) -> IntParam:
        """``5`` (fixed) or ``{low, high[, step][, log]}``; ``low``/``high`` may be one of ``symbols``."""
        sym = f" or one of {list(symbols)}" if symbols else ""

        def bound(key: str, v: Any) -> int | str:
            if isinstance(v, str) and v in symbols:
                return v
            if not is_int(v):
                raise self.error(f"{path}.{key}", f"expected an integer{sym}, got {v!r}")
            if v < lo:
                raise self.error(f"{path}.{key}", f"expected an integer >= {lo}, got {v}")
            return int(v)

        if is_int(value) or (isinstance(value, str) and value in symbols):
            b = bound("value", value) if not is_int(value) else value
            if is_int(b) and b < lo:
                raise self.error(path, f"expected an integer >= {lo}, got {b}")
            return IntParam(low=b, high=b)
        m = self.mapping(path, value, {"low", "high"}, {"step", "log"})
        low, high = bound("low", m["low"]), bound("high", m["high"])
        if is_int(low) and is_int(high) and low > high:
            raise self.error(path, f"low ({low}) must be <= high ({high})")
        step = m.get("step", 1)
        if not is_int(step) or step < 1:
            raise self.error(f"{path}.step", f"expected a positive integer, got {step!r}")
        log = m.get("log", False)
        if not isinstance(log, bool):
            raise self.error(f"{path}.log", f"expected true or false, got {log!r}")
        if log and step != 1:
            raise self.error(path, "log: true needs step: 1 (Optuna does not combine them)")
        if log and is_int(low) and low < 1:
            raise self.error(f"{path}.low", "a log-scaled integer range needs low >= 1")
        return IntParam(low=low, high=high, step=step, log=log)

    def float(self, path: str, value: Any, *, lo: float, hi: float | None = None,
              strict_lo: bool = False) -> FloatParam:
        """``0.5`` (fixed) or ``{low, high[, log]}`` within ``[lo, hi]``."""
        what = f"a number {'>' if strict_lo else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")

        def check(key: str, v: Any) -> float:
            if not is_num(v):
                raise self.error(f"{path}.{key}" if key else path, f"expected {what}, got {v!r}")
            f = float(v)
            if (f <= lo if strict_lo else f < lo) or (hi is not None and f > hi):
                raise self.error(f"{path}.{key}" if key else path, f"expected {what}, got {f}")
            return f

        if is_num(value):
            f = check("", value)
            return FloatParam(low=f, high=f)
        m = self.mapping(path, value, {"low", "high"}, {"log"})
        low, high = check("low", m["low"]), check("high", m["high"])
        if low > high:
            raise self.error(path, f"low ({low}) must be <= high ({high})")
        log = m.get("log", False)
        if not isinstance(log, bool):
            raise self.error(f"{path}.log", f"expected true or false, got {log!r}")
        if log and low <= 0:
            raise self.error(f"{path}.low", "a log-scaled range needs low > 0")
        return FloatParam(low=low, high=high, log=log)

    def choice(self, path: str, value: Any, allowed: Sequence[str]) -> ChoiceParam:
        """A list of choices (or one choice as a string), each one of ``allowed``."""
        allowed = list(allowed)
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.error(path, f"expected a non-empty list of {allowed}, got {value!r}")
        for i, v in enumerate(items):
            if v not in allowed:
                raise self.error(f"{path}[{i}]", f"expected one of {allowed}, got {v!r}")
        if len(set(items)) != len(items):
            raise self.error(path, f"lists a choice twice: {items}")
        return ChoiceParam(tuple(items))


# -- what a trial is asked for ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    """A concrete Optuna distribution of one parameter."""

    name: str
    kind: str  # int | float | choice
    low: Any = None
    high: Any = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[str, Any] | None = None
    """``(parameter, value)``: the parameter is suggested only when that earlier parameter took that value
    (a conditional parameter, e.g. ``deepcache.center`` only under ``deepcache.schedule == "nonuniform"``)."""

    @classmethod
    def integer(cls, fields: Fields, name: str, field_path: str, p: IntParam, symbols: Mapping[str, int], *,
                hi: int | None = None, hi_why: str = "") -> Dist:
        """The distribution of an integer parameter, its symbols resolved; ``high`` is capped at ``hi``."""
        if isinstance(p.low, str) and p.low not in symbols or isinstance(p.high, str) and p.high not in symbols:
            raise fields.error(field_path, f"symbol not allowed here (allowed: {sorted(symbols)})")
        low = symbols[p.low] if isinstance(p.low, str) else p.low
        high = symbols[p.high] if isinstance(p.high, str) else p.high
        if low > high:
            raise fields.error(field_path, f"resolves to low={low} > high={high} for this model")
        if hi is not None and high > hi:
            raise fields.error(f"{field_path}.high", f"{high} is too large: {hi_why}; use <= {hi}")
        if (high - low) % p.step:
            high = low + (high - low) // p.step * p.step
        return cls(name, "int", low=int(low), high=int(high), step=p.step, log=p.log)

    @classmethod
    def real(cls, name: str, p: FloatParam) -> Dist:
        """The distribution of a float parameter."""
        return cls(name, "float", low=float(p.low), high=float(p.high), log=p.log)

    @classmethod
    def choice(cls, name: str, choices: Sequence[Any]) -> Dist:
        """A categorical distribution."""
        return cls(name, "choice", choices=tuple(choices))

    def only_when(self, name: str, value: Any) -> Dist:
        """This distribution, suggested only when parameter ``name`` took ``value``."""
        return dataclasses.replace(self, when=(name, value))

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether a trial whose earlier parameters took ``values`` has this parameter."""
        return self.when is None or values.get(self.when[0]) == self.when[1]

    def suggest(self, trial: Trial) -> Any:
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def at(self, q: float) -> Any:
        """The value at quantile ``q`` in ``[0, 1)`` of the range (log-scaled ranges spaced geometrically;
        choices and integers cut into equal strata)."""
        if self.kind == "choice":
            return self.choices[min(int(q * len(self.choices)), len(self.choices) - 1)]
        if self.log:
            x = math.exp(math.log(self.low) + q * (math.log(self.high) - math.log(self.low)))
            return min(max(round(x), self.low), self.high) if self.kind == "int" else x
        if self.kind == "int":
            n = (self.high - self.low) // self.step + 1
            return self.low + min(int(q * n), n - 1) * self.step
        return self.low + q * (self.high - self.low)

    def neutral(self) -> Any:
        """The value a baseline gives a parameter it does not use."""
        return self.choices[0] if self.kind == "choice" else self.low

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        if self.kind == "int":
            return is_int(value) and self.low <= value <= self.high and (value - self.low) % self.step == 0
        return is_num(value) and self.low <= float(value) <= self.high

    def describe(self) -> str:
        if self.kind == "choice":
            return f"one of {list(self.choices)}"
        return f"[{self.low}, {self.high}]" + (" (log)" if self.log else "")
