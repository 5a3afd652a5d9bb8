"""Sharded models in the tables: local figures beside the global ones, and the per-rank table.

The tree view of a summary with sharded parameters (:attr:`~netsummary.Summary.sharded`) adds,
by default, the columns ``local_params`` (this rank's elements of the row's parameters) and
``shard`` (each parameter the module holds itself: global shape → local shape and placements,
``weight [32, 16] → [16, 16] Shard(0)``), and totals lines for this rank's share and the device
mesh. A summary made with ``all_ranks=True`` adds one table with a row per rank.

The classic table keeps torchsummary's layout: its rows and totals are the global (logical)
figures, as a drop-in must print them (scripts parse it); only the per-rank table, which the
caller asked for with ``all_ranks=True``, follows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tabulate import tabulate

from .._units import format_bytes
from .render import format_tree

if TYPE_CHECKING:
    from .._summary import LayerRecord, Summary


def shard_cell(r: LayerRecord) -> str:
    """``weight [32, 16] → [16, 16] Shard(0), bias [32] → [16] Shard(0)``; ``--`` for none."""
    if not r.shards:
        return "--"
    return ", ".join(f"{sh.name} {format_tree(sh.shape)} → {format_tree(sh.local_shape)} {', '.join(sh.placements)}"
                     for sh in r.shards)


def local_params_cell(r: LayerRecord) -> str:
    return "--" if r.local_params is None else f"{r.local_params:,}"


def footer_lines(s: Summary) -> list[tuple[str, str]]:
    """This rank's share and the mesh, for the tree view's totals (none for an unsharded model)."""
    if not s.sharded:
        return []
    who = "this rank" if s.rank is None else f"rank {s.rank} of {s.world_size}"
    lines = [
        (f"Local params ({who})", f"{s.local_params:,}"),
        ("Local trainable params", f"{s.local_trainable_params:,}"),
        ("Local params size", format_bytes(s.local_param_bytes or 0)),
    ]
    if s.local_buffer_count is not None:  # a DTensor buffer: this rank's share of the buffers
        lines += [("Local buffers (elements)", f"{s.local_buffer_count:,}"),
                  ("Local buffers size", format_bytes(s.local_buffer_bytes or 0))]
    if s.mesh_shapes:
        lines.append(("Device mesh shape", ", ".join(format_tree(m) for m in s.mesh_shapes)))
    return lines


RANKS_TITLE = "Per rank (gathered with torch.distributed.all_gather_object; totals above are global, not summed)"


def ranks_table(s: Summary, tablefmt: str = "simple") -> str:
    """The per-rank table of a summary made with ``all_ranks=True`` (``""`` without one)."""
    if not s.ranks:
        return ""
    rows = [[str(r.rank), f"{r.local_params:,}", f"{r.local_trainable_params:,}", f"{r.local_param_bytes:,}"]
            for r in s.ranks]
    table = tabulate(rows, headers=["Rank", "Local params", "Local trainable", "Local params (bytes)"],
                     tablefmt=tablefmt, colalign=("left", "right", "right", "right"), disable_numparse=True)
    title = f"<p>{RANKS_TITLE}</p>" if tablefmt == "html" else RANKS_TITLE
    return f"{title}\n{table}"
