"""Inspect a checkpoint file without the model's code: tensor names, shapes, dtypes and totals.

Example (elements and bytes)::

    summary = inspect_checkpoint("model.safetensors")
    summary.total_params   # 11038081 elements, storage shared by several names counted once
    summary.param_bytes    # 44152324 bytes: elements x dtype itemsize
    print(summary.render(depth=2))

**Parameters and buffers.** A checkpoint does not say which tensors were parameters. Tensors whose
last name component is ``running_mean``, ``running_var`` or ``num_batches_tracked`` (the buffers
of PyTorch's normalization layers: BatchNorm, InstanceNorm, SyncBatchNorm) are counted as buffers,
apart (``buffer_elements``, ``buffer_bytes``); every other tensor counts as a parameter
(``total_params``, ``param_bytes``, the Params column, ``--max-params``), so a saved torchvision
resnet18 gives ``sum(p.numel() for p in model.parameters())`` = 11,689,512. Other buffers (a
registered ``mask``, a rotary ``inv_freq``) cannot be told apart and count as parameters.

* **safetensors** (by extension or by content): only the JSON header is parsed, without torch
  (``safetensors.safe_open`` judges a header that is invalid or unusual); tensor data is never
  read, so a multi-GB file takes milliseconds. Needs the optional package: ``pip install
  'netsummary[safetensors]'``.
* **PyTorch** (``.pt``, ``.pth``, ``.bin``, anything else): ``torch.load(weights_only=True)``, with
  ``mmap=True`` for the zip format (storages are mapped, not read); the legacy non-zip format is read
  into memory. netsummary never executes pickled code: a pickle referencing arbitrary Python objects
  is refused, unloaded. A state dict wrapped in a training checkpoint (``{"state_dict": ...,
  "epoch": 3}``; also ``model``, ``model_state_dict``, ``module``, ``net``, ``network``, ``weights``)
  is unwrapped, and its other entries (optimizer state, epoch, ...) are ignored and listed in
  ``ignored``; nested dicts/lists of tensors are flattened with dotted keys (``a.b``, ``layers.0``).
* **Sharded** checkpoints (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``):
  the index's ``weight_map`` names the shard files; every shard, which must lie next to the index,
  is inspected and the totals are summed (``shards`` lists them).

``nbytes`` is ``numel x itemsize``. Names aliasing the same storage (same storage, offset, shape,
stride, dtype: tied weights saved twice) count once in every total and carry ``tied_to``; partial
views of one storage each count in full.

**Hostile files.** Only regular files are read: a FIFO or a device is refused without being opened.
Loading is linear in the file (see :mod:`netsummary._checkpoints.safetensors_header` and
:mod:`netsummary._checkpoints.pytorch_file` for its bounds), and so is the tree: names deeper than
:data:`~netsummary._checkpoints.summary.MAX_TREE_DEPTH` levels fold the rest of the name into one
row. :meth:`CheckpointSummary.render` prints at most
:data:`~netsummary._checkpoints.summary.MAX_ROWS` rows and labels of at most :data:`MAX_LABEL`
characters, shows control characters in names escaped (``\\n``, ``\\x1b``) and says under the table
what it left out.

Raises :class:`CheckpointError` (a ``ValueError``) for a missing path, a directory, a FIFO or
device, a file that is not a checkpoint or holds no tensors, and a pickle that is not weights-only;
:class:`MissingDependencyError` (an ``ImportError``) for safetensors without its package.
"""

from __future__ import annotations

import json
import os

from .._errors import CheckpointError, MissingDependencyError
from .packed import find_packed
from .entries import TensorEntry, natural_key
from .pytorch_file import read_pytorch
from .safetensors_header import read_safetensors
from .summary import MAX_LABEL, CheckpointSummary, PrefixRow, _count_dtypes, _listed
from .._safeio import MAX_JSON_BYTES, read_head, read_regular, shown

__all__ = ["CheckpointError", "CheckpointSummary", "MissingDependencyError", "PrefixRow", "TensorEntry",
           "inspect_checkpoint"]


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointSummary:
    """Summarize a safetensors or PyTorch checkpoint without the model's code or its tensor data.

    A saved ``Linear(16, 8)`` state dict gives ``total_params`` 136 elements (128 weight + 8 bias)
    and ``total_bytes`` 544 as float32. Normalization buffers (``running_mean``, ``running_var``,
    ``num_batches_tracked``) are counted apart from the parameters; see the module docstring. A
    sharded checkpoint's index (``*.index.json``) sums the shards listed in its ``weight_map``.

    Raises:
        CheckpointError: the path does not exist, is a directory, is empty or unreadable, is not a
            checkpoint, holds no tensors, or is a pickle that is not weights-only (refused unloaded);
            an index whose shards are not all next to it.
        MissingDependencyError: a safetensors file without the ``safetensors`` package installed.
    """
    name = os.fspath(path)

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot inspect checkpoint {name!r}: {why}", name)

    if not os.path.exists(name):
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: no such file", name)
    if os.path.isdir(name):
        raise CheckpointError(
            f"cannot inspect checkpoint {name!r}: it is a directory; pass the checkpoint file inside it "
            "(e.g. model.safetensors or pytorch_model.bin)", name)
    try:  # a FIFO or a device is refused before it is opened: it could block or never end
        head, size = read_head(name, 9, "a checkpoint", refuse)
    except (OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: cannot read it ({err})", name) from err
    if size == 0:
        raise CheckpointError(f"cannot inspect checkpoint {name!r}: the file is empty", name)
    if name.lower().endswith(".json"):
        return _inspect_index(name)
    looks_safetensors = head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= size - 8
    if name.lower().endswith(".safetensors") or looks_safetensors:
        entries, metadata = read_safetensors(name, head, size)
        return _summarize(name, "safetensors", entries, None, metadata)
    entries, key, ignored = read_pytorch(name, head)
    return _summarize(name, "pytorch", entries, key, {}, ignored)


def _summarize(path: str, fmt: str, entries: list[TensorEntry], key: str | None, metadata: dict[str, str],
               ignored: tuple[str, ...] = (), shards: tuple[str, ...] = ()) -> CheckpointSummary:
    if not entries:
        where = f" under {key!r}" if key else ""
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: it holds no tensors{where}", path)
    unique = [e for e in entries if e.tied_to is None]
    buffers = [e for e in unique if e.is_buffer]
    packed = find_packed(unique, os.path.dirname(path))  # GPTQ/AWQ qweight: logical counts, state apart
    counts = {} if packed is None else packed.params
    quant = {} if packed is None else dict(
        quantized_params=sum(counts[e.name] for e in unique if e.name in counts and e.name not in packed.state),
        quant_state_bytes=sum(e.nbytes for e in unique if e.name in packed.state), packed=packed)
    return CheckpointSummary(path, fmt, tuple(entries), sum(counts.get(e.name, e.numel) for e in unique if not e.is_buffer),
                             sum(e.nbytes for e in unique), _count_dtypes(unique), key, metadata,
                             sum(e.numel for e in buffers), sum(e.nbytes for e in buffers), ignored, shards, **quant)


def _inspect_index(path: str) -> CheckpointSummary:
    """A sharded checkpoint's index (``model.safetensors.index.json``): every shard its
    ``weight_map`` names, read from the index's directory, summed into one summary."""
    expected = ("expected a sharded checkpoint index such as model.safetensors.index.json, a JSON object whose "
                '"weight_map" maps tensor names to shard files')

    def refuse(why: str) -> CheckpointError:
        return CheckpointError(f"cannot inspect checkpoint {path!r}: {why}", path)

    try:
        data = json.loads(read_regular(path, MAX_JSON_BYTES, "a sharded checkpoint index", refuse).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        if isinstance(err, CheckpointError):
            raise
        why = "nested too deeply" if isinstance(err, RecursionError) else shown(str(err), 300)
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: a .json file that cannot be read as JSON "
                              f"({why}); {expected}", path) from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(
            isinstance(v, str) and v for v in weight_map.values()):
        raise CheckpointError(f"cannot inspect checkpoint {path!r}: not a checkpoint; {expected}", path)
    shards = tuple(dict.fromkeys(weight_map.values()))
    listed = _listed(shards, 4)
    folder = os.path.dirname(path)
    for shard in shards:
        if os.path.basename(shard) != shard or shard.lower().endswith(".json") or "\0" in shard:
            raise CheckpointError(f"cannot inspect checkpoint {path!r}: its weight_map names "
                                  f"{shown(shard, MAX_LABEL)!r}; expected shard file names next to the index "
                                  "(model-00001-of-00002.safetensors)", path)
        if not os.path.isfile(os.path.join(folder, shard)):
            raise CheckpointError(
                f"cannot inspect checkpoint {path!r}: it is the index of a sharded checkpoint ({len(shards)} shard "
                f"files: {listed}) and shard {shown(shard, MAX_LABEL)!r} is not next to it in {folder or '.'}; "
                "download every shard there, or inspect each shard file on its own", path)
    parts = [inspect_checkpoint(os.path.join(folder, shard)) for shard in shards]
    entries = [e for part in parts for e in part.tensors]
    formats = sorted({part.format for part in parts})
    if formats == ["safetensors"]:
        entries.sort(key=lambda e: natural_key(e.name))
    ignored = tuple(f"{shard}: {name}" for shard, part in zip(shards, parts) for name in part.ignored)
    return _summarize(path, "+".join(formats), entries, None, {}, ignored, shards)
