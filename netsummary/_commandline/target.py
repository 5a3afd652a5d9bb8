"""Load a command-line target into an ``nn.Module``: ``path/to/file.py:NAME`` or ``package.module:NAME``.

NAME (a dotted attribute path such as ``Models.build`` is allowed) may be

* an ``nn.Module`` subclass: instantiated as ``NAME(**kwargs)``;
* a factory function (any other callable): called as ``NAME(**kwargs)``, it must return an
  ``nn.Module``;
* an ``nn.Module`` instance: used as it is (``kwargs`` must then be empty).

A file is imported by its path under a private module name; its directory is on ``sys.path``
only while it is imported and its model built, so that it can import its neighbours. The
neighbours it imported from there (``from helper import Net``) are then dropped from
``sys.modules``, so that the next file target, in another folder with its own ``helper.py``,
imports its own instead of silently reusing the first one's; the model built keeps its classes
alive. With :func:`loaded_target` they stay in ``sys.modules`` until the block ends (for a forward
that imports lazily). A module name is imported with ``base_dir`` (the current directory, or the
config file's) on ``sys.path`` likewise.

Every problem is a :class:`~netsummary._errors.TargetError` with a one-line message: a file or
module that does not exist or fails to import, a missing NAME (the message lists names that do
exist), a NAME that is not a module, class or factory, a factory that returns something else, a
constructor that raises (chained to that error), code that calls ``sys.exit()`` while it is
imported or built.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .._errors import TargetError
from .._tracing.device import resolve_device
from .._safeio import regular_file_size

_FORM = "expected path/to/file.py:NAME or package.module:NAME (e.g. examples/discriminator.py:discriminator)"


def split_target(target: str) -> tuple[str, str]:
    """``"models/gan.py:Net"`` -> ``("models/gan.py", "Net")``; splits at the last colon.

    >>> split_target("examples/discriminator.py:discriminator")
    ('examples/discriminator.py', 'discriminator')
    >>> split_target("torchvision.models:resnet18")
    ('torchvision.models', 'resnet18')

    Raises:
        TargetError: no colon, or an empty part.
    """
    where, colon, name = target.rpartition(":")
    if not colon or not where or not name.strip():
        raise TargetError(f"invalid target {target!r}: {_FORM}", target)
    return where, name.strip()


def is_file_target(where: str) -> bool:
    """A path (ends in ``.py`` or contains a path separator) rather than a module name."""
    return where.endswith(".py") or "/" in where or os.sep in where


def load_target(target: str, kwargs: dict[str, Any] | None = None, base_dir: str = ".",
                device: str | torch.device | None = None) -> nn.Module:
    """Import ``target`` and return the ``nn.Module`` it names, built with ``kwargs``.

    ``base_dir`` anchors a relative file path and is on ``sys.path`` while a module is imported.
    A class or factory is built under ``with torch.device(device)`` when ``device`` is given, so
    ``"meta"`` builds a model without allocating its weights. A file target's neighbour modules
    are dropped from ``sys.modules`` before this returns (see the module docstring).

    Raises:
        TargetError: see the module docstring.
        DeviceError: ``device`` is unknown or unavailable (checked before the model is built).
    """
    with loaded_target(target, kwargs, base_dir, device) as model:
        return model


@contextlib.contextmanager
def loaded_target(target: str, kwargs: dict[str, Any] | None = None, base_dir: str = ".",
                  device: str | torch.device | None = None) -> Iterator[nn.Module]:
    """:func:`load_target` for the length of a ``with`` block: the modules a file target imported
    from its own directory stay in ``sys.modules`` until the block ends, then are dropped.

    Raises:
        TargetError, DeviceError: as :func:`load_target`.
    """
    where, name = split_target(target)
    if not is_file_target(where):
        yield _build(target, name, _lookup(target, where, name, _import_module(target, where, base_dir)),
                     kwargs or {}, device)
        return
    path = _file_path(target, where, base_dir)
    before = set(sys.modules)
    try:
        with _on_path(os.path.dirname(path)):
            module = _import_file(target, where, path)
            model = _build(target, name, _lookup(target, where, name, module), kwargs or {}, device)
        yield model
    finally:
        _forget_neighbours(before, os.path.dirname(path))


def _lookup(target: str, where: str, name: str, module: ModuleType) -> Any:
    """The object ``name`` (dotted: ``Models.build``) names in ``module``."""
    obj: Any = module
    for i, part in enumerate(name.split(".")):
        if not hasattr(obj, part):
            owner = where if i == 0 else f"{where}:{'.'.join(name.split('.')[:i])}"
            raise TargetError(f"invalid target {target!r}: {owner} has no attribute {part!r}{_known(obj, part)}",
                              target)
        obj = getattr(obj, part)
    return obj


def _forget_neighbours(before: set[str], directory: str) -> None:
    """Drop from ``sys.modules`` the modules imported since ``before`` from ``directory`` (found
    there through its ``sys.path`` entry: ``helper`` from ``directory/helper.py``, ``lib.layers``
    from ``directory/lib/``). An installed package (``site-packages``), even one in a virtual
    environment below ``directory``, is kept: its extensions may not survive a second import."""
    for name in [n for n in list(sys.modules) if n not in before]:
        if _found_in(sys.modules.get(name), name, directory):
            del sys.modules[name]


def _found_in(module: Any, name: str, directory: str) -> bool:
    top = name.partition(".")[0]
    places = [getattr(module, "__file__", None)]
    with contextlib.suppress(TypeError):
        places += list(getattr(module, "__path__", None) or ())  # a namespace package has no __file__
    for place in places:
        if not isinstance(place, str):
            continue
        try:
            relative = os.path.relpath(os.path.abspath(place), directory)
        except ValueError:  # another drive (Windows)
            continue
        parts = relative.split(os.sep)
        installed = "site-packages" in parts or "dist-packages" in parts  # never re-import an installed package
        if parts[0] != os.pardir and parts[0].split(".")[0] == top and not installed:
            return True
    return False


def exit_call(err: SystemExit) -> str:
    """``"sys.exit(0)"``: how user code called ``sys.exit``, for messages."""
    return "sys.exit()" if err.code is None else f"sys.exit({err.code!r})"


def _a(noun: str) -> str:
    """``"an int"``, ``"a list"``."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _known(obj: Any, missing: str = "") -> str:
    """``"; it defines: Net, build_model; did you mean 'Net'?"``: what could be a target there.

    Candidates are ``nn.Module`` instances and subclasses, then functions (possible factories),
    defined in that module (or, for a package, in its submodules: ``torch.nn:Linear``); a function
    annotated to return something other than a module is left out.
    """
    if isinstance(obj, ModuleType):
        home = obj.__name__
        items = list(vars(obj).items())
    else:  # a class in a dotted NAME (Models.build)
        home = getattr(obj, "__module__", None)
        items = [(n, getattr(obj, n, None)) for n in dir(obj)]
    modules, functions = [], []
    for n, v in items:
        if n.startswith("_"):
            continue
        owner = getattr(v, "__module__", None)
        here = isinstance(owner, str) and home is not None and (owner == home or owner.startswith(f"{home}."))
        if isinstance(v, nn.Module) or (here and isinstance(v, type) and issubclass(v, nn.Module)):
            modules.append(n)
        elif here and inspect.isroutine(v) and _may_return_module(v):
            functions.append(n)
    names = modules + functions
    close = difflib.get_close_matches(missing, names, n=1) if missing else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if not names:
        return hint
    more = f", ... ({len(names)} in all)" if len(names) > 8 else ""
    return f"; it defines: {', '.join(names[:8])}{more}{hint}"


def _may_return_module(func: Any) -> bool:
    """False when ``func`` is annotated to return something that is not an ``nn.Module``
    (``-> int``, ``-> None``); True when unannotated or unclear (``-> Optional[Net]``)."""
    try:
        returns = inspect.signature(func, eval_str=True).return_annotation
    except Exception:  # an annotation that does not evaluate, or no signature (some builtins)
        try:
            returns = inspect.signature(func).return_annotation
        except (TypeError, ValueError):
            return True
    if returns is inspect.Signature.empty:
        return True
    if returns is None:
        return False
    if isinstance(returns, type):
        return issubclass(returns, nn.Module)
    if isinstance(returns, str):
        return returns.split("[")[0].split(".")[-1].strip() not in _NOT_MODULES
    return True


_NOT_MODULES = ("int", "float", "str", "bool", "bytes", "dict", "list", "tuple", "set", "None", "Tensor")


@contextlib.contextmanager
def _on_path(directory: str) -> Iterator[None]:
    """``directory`` first on ``sys.path`` for the block only (removed after, even on error)."""
    sys.path.insert(0, directory)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)


def _file_path(target: str, where: str, base_dir: str) -> str:
    path = os.path.abspath(os.path.join(base_dir, where))
    if not os.path.exists(path):
        raise TargetError(f"invalid target {target!r}: no such file {path}", target)
    if os.path.isdir(path) or not path.endswith(".py"):
        raise TargetError(f"invalid target {target!r}: {path} is not a Python file (.py); {_FORM}", target)
    # a FIFO or a device named x.py would hang the import or read forever: refused unopened
    regular_file_size(path, "a target's code", lambda why: TargetError(f"invalid target {target!r}: {path}: {why}", target))
    return path


def _import_file(target: str, where: str, path: str) -> ModuleType:
    """Execute the file at ``path`` (its directory already on ``sys.path``) as a private module."""
    stem = re.sub(r"\W", "_", os.path.basename(path)[:-3])
    module_name = f"_netsummary_target_{stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None  # a .py path always has a source loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException as err:
        sys.modules.pop(module_name, None)
        if isinstance(err, SystemExit):
            raise TargetError(f"{target} called {exit_call(err)} while being loaded", target) from err
        if not isinstance(err, Exception):
            raise
        hint = ""
        if isinstance(err, ImportError) and "relative import" in str(err):
            hint = "; a file inside a package is imported by module name: package.module:NAME"
        raise TargetError(f"cannot import {where}: {_where_failed(err, path)}{hint}", target) from err
    return module


def _import_module(target: str, where: str, base_dir: str) -> ModuleType:
    try:
        with _on_path(os.path.abspath(base_dir)):
            return importlib.import_module(where)
    except ModuleNotFoundError as err:
        if err.name and where.startswith(err.name) and (where == err.name or where[len(err.name)] == "."):
            raise TargetError(f"invalid target {target!r}: no module named {err.name!r} (a file path needs "
                              "its .py suffix, e.g. models/net.py:Net)", target) from err
        raise TargetError(f"cannot import {where}: {_where_failed(err, None)}", target) from err
    except Exception as err:
        raise TargetError(f"cannot import {where}: {_where_failed(err, None)}", target) from err
    except SystemExit as err:
        raise TargetError(f"{target} called {exit_call(err)} while being loaded", target) from err


def _where_failed(err: Exception, path: str | None) -> str:
    """``"line 3: NameError: name 'x' is not defined"``: the error and the line of the user's
    file (or the innermost frame) where it was raised, on one line."""
    text = _one_line(err)
    if isinstance(err, SyntaxError):
        return f"line {err.lineno}: SyntaxError: {err.msg}"
    frames = traceback.extract_tb(err.__traceback__)
    own = [f for f in frames if path is not None and os.path.abspath(f.filename) == path]
    frame = (own or frames or [None])[-1]
    at = "" if frame is None else f"line {frame.lineno}: " if own else f"{frame.filename}, line {frame.lineno}: "
    return f"{at}{type(err).__name__}: {text}"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or "(no message)"


def _build(target: str, name: str, obj: Any, kwargs: dict[str, Any], device: Any) -> nn.Module:
    if isinstance(obj, nn.Module):
        if kwargs:
            raise TargetError(f"invalid target {target!r}: {name} is an nn.Module instance, so it takes no "
                              f"--kwargs (they apply to a class or factory); got {sorted(kwargs)}", target)
        return obj
    if isinstance(obj, type) and not issubclass(obj, nn.Module):
        raise TargetError(f"invalid target {target!r}: {name} is the class {obj.__name__}, which is not a "
                          "torch.nn.Module subclass", target)
    if not callable(obj):
        raise TargetError(f"invalid target {target!r}: {name} is {_a(type(obj).__name__)}; expected an nn.Module "
                          "subclass, a factory function returning one, or an nn.Module instance", target)
    call = f"{name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    where = contextlib.nullcontext() if device is None else resolve_device([], device)  # DeviceError if unknown
    try:
        with where:
            model = obj(**kwargs)
    except Exception as err:
        raise TargetError(f"cannot build the model: {call} raised {type(err).__name__}: {_one_line(err)}",
                          target) from err
    except SystemExit as err:
        raise TargetError(f"{target} called {exit_call(err)} while being built ({call})", target) from err
    if not isinstance(model, nn.Module):
        raise TargetError(f"invalid target {target!r}: the factory {call} returned {_a(type(model).__name__)}, "
                          "expected a torch.nn.Module", target)
    return model
