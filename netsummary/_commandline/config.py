"""Model specs: what to summarize and which budgets to hold it to, from ``[tool.netsummary]`` or flags.

A ``pyproject.toml`` declares named models, each a table of the same keys as the command line's
flags (without the ``--``)::

    [tool.netsummary.models.discriminator]
    target = "examples/discriminator.py:discriminator"   # relative to the pyproject.toml's directory
    input-size = [[3, 64, 64]]                           # one list per input; [3, 64, 64] for one
    dtypes = ["float32"]
    max-params = "12M"                                   # SI counts: 12M = 12,000,000
    max-macs = "500M"
    max-param-bytes = "50MiB"                            # MiB = 2**20 bytes, MB = 10**6 bytes

Valid keys: :data:`KEYS`; ``target`` and ``input-size`` are required. An unknown or missing key,
a value of the wrong type or a malformed quantity is a :class:`~netsummary._errors.ConfigError`
whose message starts with the file and the full key, e.g.
``pyproject.toml: tool.netsummary.models.discriminator.max-parms: unknown key; valid keys are ...``.
A model's name is also its file name under ``--save-baselines DIR`` and ``--baseline DIR``
(``DIR/NAME.json``), so it must be a safe file name: not empty, no control character (NUL, ESC,
a newline, ...), no ``/``, ``\\`` or ``..``, not starting with ``.``, at most 250 bytes of UTF-8
(see :func:`~netsummary._safeio.file_name_problem`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .budget import MEMORY_BUDGETS, QUANTITIES, parse_limits
from .._errors import ConfigError, InputSpecError
from .._safeio import MAX_TOML_BYTES, escape, file_name_problem, read_regular
from .._units import parse_percent

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float": torch.float32, "float16": torch.float16, "half": torch.float16,
    "bfloat16": torch.bfloat16, "float64": torch.float64, "double": torch.float64, "int64": torch.int64,
    "long": torch.int64, "int32": torch.int32, "int": torch.int32, "int8": torch.int8, "uint8": torch.uint8,
    "bool": torch.bool,
}
MODES = ("eval", "train", "same")
BUDGET_KEYS = {k.replace("_", "-"): k for k in QUANTITIES}  # "max-params" -> "max_params"
#: the memory keys: what to measure (``estimate``, ``optimizer``, ``autocast``) and what to hold it to
MEMORY_KEYS = ("estimate", "optimizer", "autocast", "fits", "context", "world-size", "strategy")
KEYS = ("target", "input-size", "dtypes", "batch-size", "device", "mode", "kwargs", *BUDGET_KEYS,
        "baseline", "max-growth", *MEMORY_KEYS)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model to summarize and check. ``limits`` are in base units (elements, MACs, bytes),
    keyed like :func:`~netsummary.check_budget`'s keywords; ``max_growth`` is a fraction (0.02)."""

    name: str
    target: str
    input_size: list[tuple[int, ...]] | None = None
    dtypes: list[torch.dtype] | None = None
    batch_size: int = -1
    device: str | None = None
    mode: str = "eval"
    kwargs: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    baseline: str | None = None
    max_growth: float | None = None
    base_dir: str = "."
    estimate: str | None = None
    optimizer: str = "adamw"
    autocast: torch.dtype | None = None
    fits: str | int | None = None
    context: int | None = None
    world_size: int | None = None
    strategy: str | None = None

    @property
    def memory_kwargs(self) -> dict[str, Any]:
        """The keywords of ``summary()`` for the memory estimate (empty without one)."""
        if self.estimate is None:
            return {}
        out: dict[str, Any] = {"estimate": self.estimate, "optimizer": self.optimizer, "autocast": self.autocast}
        for key in ("fits", "context", "world_size", "strategy"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def parse_size(text: str) -> tuple[int, ...]:
    """``"3,64,64"`` -> ``(3, 64, 64)``: one input's shape without the batch.

    >>> parse_size("3,64,64"), parse_size("(3, 224, 224)"), parse_size("16")
    ((3, 64, 64), (3, 224, 224), (16,))

    Raises:
        InputSpecError: an empty part or one that is not a positive integer.
    """
    parts = text.strip().strip("()[]").split(",")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d <= 0 for d in dims):
        raise InputSpecError(f"invalid input size {text!r}: expected positive integers separated by commas, "
                             "e.g. 3,64,64 (one sample, without the batch)", text)
    return dims


def parse_dtypes(names: list[str]) -> list[torch.dtype]:
    """``["float32", "long"]`` -> ``[torch.float32, torch.int64]`` (``torch.`` prefix optional).

    Raises:
        InputSpecError: an unknown name (the message lists the known ones).
    """
    out = []
    for name in names:
        key = name.strip().removeprefix("torch.").lower()
        if key not in DTYPES:
            raise InputSpecError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}", name)
        out.append(DTYPES[key])
    return out


def build_spec(name: str, table: dict[str, Any], label: Callable[[str], str], base_dir: str = ".",
               error: type[Exception] = ConfigError, source: str = "") -> ModelSpec:
    """Validate a model's table (config keys, e.g. ``"input-size"``) into a :class:`ModelSpec`.

    ``label(key)`` names a key in messages (``tool.netsummary.models.gan.max-params`` or
    ``--max-params``), after ``source`` (the file) when given. Sizes may be lists of ints or
    ``"3,64,64"`` strings; ``dtypes`` a list of names or one comma-separated string; budgets ints
    or strings with units; ``max-growth`` a string with ``%``.

    Raises:
        ``error`` (ConfigError by default): the message names the key; ``.key`` (ConfigError) or
            ``.value`` (InputSpecError) holds ``label(key)``.
    """

    def fail(key: str, why: str) -> Exception:
        where = f"{source}: " if source else ""
        return error(f"{where}{label(key)}: {why}", label(key))

    unknown = [k for k in table if k not in KEYS]
    if unknown:
        raise fail(unknown[0], f"unknown key; valid keys are {', '.join(KEYS)}")
    target = table.get("target")
    if not isinstance(target, str) or ":" not in target:
        why = "missing" if target is None else f"got {target!r}"
        raise fail("target", f"{why}; expected a string such as \"models/gan.py:Generator\" or \"pkg.models:build\"")
    values: dict[str, Any] = {"name": name, "target": target, "base_dir": base_dir}
    for key, parse in (("input-size", _sizes), ("dtypes", _dtype_list)):
        if key in table:
            try:
                values[key.replace("-", "_")] = parse(table[key])
            except InputSpecError as err:
                raise fail(key, str(err)) from None
    for key, kind in (("batch-size", int), ("device", str), ("mode", str), ("kwargs", dict), ("baseline", str)):
        if key in table:
            value = table[key]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise fail(key, f"expected {'a table' if kind is dict else kind.__name__}, got {value!r}")
            values[key.replace("-", "_")] = os.path.join(base_dir, value) if key == "baseline" else value
    if values.get("batch_size", -1) != -1 and values["batch_size"] < 1:
        raise fail("batch-size", f"expected -1 (any) or a positive int, got {values['batch_size']}")
    if values.get("mode", "eval") not in MODES:
        raise fail("mode", f"expected one of {', '.join(MODES)}, got {values['mode']!r}")
    limits = {}
    for key, keyword in BUDGET_KEYS.items():
        if key in table:
            try:
                limits.update(parse_limits(**{keyword: table[key]}))
            except InputSpecError as err:
                raise fail(key, str(err).removeprefix(f"{keyword}: ")) from None
    values["limits"] = limits
    values.update(_memory_keys(table, limits, fail))
    if "max-growth" in table:
        raw = table["max-growth"]
        if not isinstance(raw, str):
            raise fail("max-growth", f"expected a percentage string such as \"2%\", got {raw!r}")
        try:
            values["max_growth"] = parse_percent(raw)
        except InputSpecError as err:
            raise fail("max-growth", str(err)) from None
    return ModelSpec(**values)


def _memory_keys(table: dict[str, Any], limits: dict[str, int], fail: Callable[[str, str], Exception]) -> dict[str, Any]:
    """Validate the memory keys (:data:`MEMORY_KEYS`); a memory budget implies its estimate.
    The values themselves (a size or device for ``fits``, a known optimizer) are checked by
    ``summary()`` before any forward runs."""
    out: dict[str, Any] = {}
    kinds = {kind for key, kind in MEMORY_BUDGETS.items() if key in limits}
    budget_keys = [k.replace("_", "-") for k in MEMORY_BUDGETS if k in limits]
    if len(kinds) == 2:
        raise fail(budget_keys[1], "one model measures one estimate (train or inference); give max-train-memory "
                   "and max-inference-memory to two models of the same target")
    estimate = table.get("estimate")
    if estimate is not None and estimate not in ("train", "inference"):
        raise fail("estimate", f"expected 'train' or 'inference', got {estimate!r}")
    if kinds and estimate is not None and estimate not in kinds:
        raise fail(budget_keys[0], f"needs estimate {next(iter(kinds))!r}, but estimate is {estimate!r}")
    estimate = estimate or (next(iter(kinds)) if kinds else None)
    given = [k for k in MEMORY_KEYS[1:] if k in table]
    if given and estimate is None:
        raise fail(given[0], "needs estimate (train or inference: the step to measure)")
    out["estimate"] = estimate
    for key, kinds_ok, what in (("optimizer", (str,), "a name such as adamw"), ("autocast", (str,), "a dtype name"),
                                ("fits", (str, int), "a size such as 24GiB or a device such as cuda:0"),
                                ("context", (int,), "a positive int (tokens)"),
                                ("world-size", (int,), "a positive int (ranks)"),
                                ("strategy", (str,), "ddp, zero2 or fsdp")):
        if key in table:
            value = table[key]
            if not isinstance(value, kinds_ok) or isinstance(value, bool):
                raise fail(key, f"expected {what}, got {value!r}")
            out[key.replace("-", "_")] = value
    if "autocast" in out:
        key = out["autocast"].strip().removeprefix("torch.").lower()
        if key not in DTYPES or not DTYPES[key].is_floating_point:
            raise fail("autocast", f"expected a floating dtype name such as bfloat16 or float16, got {out['autocast']!r}")
        out["autocast"] = DTYPES[key]
    return out


def _dtype_list(raw: Any) -> list[torch.dtype]:
    """``["float32", "long"]`` or ``"float32,long"``."""
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list) or not all(isinstance(d, str) for d in names):
        raise InputSpecError(f"expected a list of dtype names such as [\"float32\", \"long\"], got {raw!r}", raw)
    return parse_dtypes(names)


def _sizes(raw: Any) -> list[tuple[int, ...]]:
    """One or several input sizes: ``[3, 64, 64]``, ``[[3, 64, 64], [10]]``, ``"3,64,64"``,
    ``["3,64,64", "10"]``."""
    if isinstance(raw, str):
        return [parse_size(raw)]
    if isinstance(raw, list) and raw and not any(isinstance(d, (list, str)) for d in raw):  # one input
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in raw):
            raise InputSpecError(f"expected a list of ints such as [3, 64, 64], got {raw!r}", raw)
        return [parse_size(",".join(map(str, raw)))]
    if isinstance(raw, list) and raw:
        out = []
        for item in raw:
            if isinstance(item, str):
                out.append(parse_size(item))
            elif isinstance(item, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in item):
                out.append(parse_size(",".join(map(str, item))))
            else:
                raise InputSpecError(f"expected a list of ints per input such as [3, 64, 64], got {item!r}", item)
        return out
    raise InputSpecError(f"expected [3, 64, 64] (one input) or [[3, 64, 64], [10]] (several), got {raw!r}", raw)


def find_config(start: str = ".") -> str:
    """The nearest ``pyproject.toml`` from ``start`` upwards.

    Raises:
        ConfigError: none found.
    """
    here = os.path.abspath(start)
    while True:
        candidate = os.path.join(here, "pyproject.toml")
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            raise ConfigError(f"no pyproject.toml in {os.path.abspath(start)} or its parents; pass --config FILE")
        here = parent


def load_config(path: str) -> dict[str, ModelSpec]:
    """The models of ``[tool.netsummary.models.*]`` in ``path``, in file order; target paths and
    baselines are relative to the file's directory.

    Only a regular file of at most :data:`~netsummary._safeio.MAX_TOML_BYTES` is read: a FIFO or
    a device (``/dev/zero``) is refused unopened.

    Raises:
        ConfigError: the file is missing, not a regular file, too large or not TOML, has no
            models, or a table is invalid.
    """

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{path}: {why}")

    try:
        data = tomllib.loads(read_regular(path, MAX_TOML_BYTES, "a TOML config", refuse).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: cannot read it as TOML (not UTF-8: byte {err.object[err.start]:#04x} at "
                          f"offset {err.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: cannot read it as TOML (nested too deeply for the parser)") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it as TOML ({err})") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: tool: expected a table, got {type(tool).__name__}", "tool")
    section = tool.get("netsummary")
    example = '[tool.netsummary.models.mymodel] with target = "models.py:Net" and input-size = [3, 224, 224]'
    if section is None:
        raise ConfigError(f"{path}: no [tool.netsummary] table; add one, e.g. {example}")
    if not isinstance(section, dict) or set(section) - {"models"}:
        bad = next(iter(set(section) - {"models"})) if isinstance(section, dict) else ""
        key = f"tool.netsummary.{bad}".rstrip(".")
        raise ConfigError(f"{path}: {key}: unknown key; [tool.netsummary] holds only models", key)
    models = section.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: tool.netsummary.models: expected at least one model table, e.g. {example}",
                          "tool.netsummary.models")
    base_dir = os.path.dirname(os.path.abspath(path))
    specs = {}
    for name, table in models.items():
        prefix = f"tool.netsummary.models.{name}"
        problem = file_name_problem(name)
        if problem:
            prefix = f"tool.netsummary.models.{json.dumps(name)}"  # as TOML quotes such a key
            raise ConfigError(f"{path}: {prefix}: invalid model name {escape(repr(name))} ({problem}); the name is "
                              "also its file name NAME.json under --save-baselines and --baseline DIR, so it must "
                              "not be empty, contain a control character, /, \\ or .., start with . or be over "
                              "250 bytes", prefix)
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {prefix}: expected a table of keys such as target and input-size, "
                              f"got {table!r}", prefix)
        spec = build_spec(name, table, lambda key, p=prefix: f"{p}.{key}", base_dir, source=path)
        if spec.input_size is None:
            raise ConfigError(f"{path}: {prefix}: missing key input-size; expected one sample's shape without the "
                              "batch, e.g. input-size = [3, 224, 224] (or [[3, 224, 224], [10]] for two inputs)",
                              f"{prefix}.input-size")
        specs[name] = spec
    return specs
