"""One rank of the real multi-process job that tests/test_distributed.py launches with
``python -m torch.distributed.run --standalone --nproc-per-node 2`` (gloo, CPU).

Every scenario runs in the same job (one launch keeps the tests fast on a 2-core machine); each
rank writes what it saw to ``<out>/rank<r>.json``, and the test asserts hand-derived values.
Not a test module itself: it only runs as a script.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _params(model) -> list:
    """(name, type, global shape, local values) of every parameter: what must not change."""
    from torch.distributed.tensor import DTensor

    out = []
    for name, p in model.named_parameters():
        local = p.to_local() if isinstance(p, DTensor) else p
        out.append((name, id(p), type(p).__name__, tuple(p.shape), local.detach().clone()))
    return out


def _same(before: list, after: list) -> bool:
    import torch

    return len(before) == len(after) and all(
        a[:4] == b[:4] and (a[4].device.type == "meta" or torch.equal(a[4], b[4])) for a, b in zip(before, after))


def _layers(s) -> list:
    return [{"name": r.name, "params": r.params, "local_params": r.local_params,
             "shards": [[sh.name, list(sh.shape), list(sh.local_shape), list(sh.placements), list(sh.mesh_shape)]
                        for sh in r.shards]} for r in s.layers]


def _figures(s) -> dict:
    return {"total": s.total_params, "trainable": s.trainable_params, "param_bytes": s.param_bytes,
            "local": s.local_params, "local_trainable": s.local_trainable_params, "local_bytes": s.local_param_bytes,
            "rank": s.rank, "world_size": s.world_size, "mesh_shapes": [list(m) for m in s.mesh_shapes],
            "macs": s.total_macs, "layers": _layers(s), "roundtrip": type(s).from_json(s.to_json()) == s}


def _outcome(call) -> dict:
    """What ``call()`` (a summary with ``all_ranks=True``) returned or raised, as JSON."""
    try:
        s = call()
    except Exception as err:
        partial = getattr(err, "partial", None)
        ranks = getattr(partial, "ranks", None)
        return {"type": type(err).__name__, "error": str(err), "failed": getattr(err, "failed", None),
                "collective": getattr(err, "collective", None), "cause": type(err.__cause__).__name__,
                "ranks": None if ranks is None else [[r.rank, r.local_params] for r in ranks]}
    return {"type": None, "ranks": [[r.rank, r.local_params] for r in s.ranks]}


def mlp():
    from torch import nn

    # 16*32 + 32 = 544;  32*8 + 8 = 264;  8*3 + 3 = 27;  total 835
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 3))


def main(out: Path) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from torch import nn

    from netsummary import DeviceError, summary

    from datetime import timedelta

    dist.init_process_group("gloo", timeout=timedelta(seconds=60))  # a broken collective fails, never hangs
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    result: dict = {}

    # FSDP2: every Linear and the root sharded
    torch.manual_seed(0)
    plain = mlp()
    result["unsharded_numel"] = sum(p.numel() for p in plain.parameters())
    model = mlp()
    model.load_state_dict(plain.state_dict())
    for i in (0, 2, 4):
        fully_shard(model[i], mesh=mesh)
    fully_shard(model, mesh=mesh)
    x = torch.arange(32.0).reshape(2, 16) / 32
    with torch.no_grad():
        out_before = model(x)
    before = _params(model)
    printed: list[str] = []
    s = summary(model, (16,), print_fn=printed.append, format="tree")
    result["fsdp"] = _figures(s) | {"printed": printed, "unchanged": _same(before, _params(model))}
    s = summary(model, (16,), verbose=0, mode="train")
    with torch.no_grad():
        out_after = model(x)
    result["fsdp_train"] = _figures(s) | {"unchanged": _same(before, _params(model)),
                                          "same_output": torch.equal(out_before, out_after),
                                          "same_as_plain": torch.allclose(out_after, plain(x))}
    model[2].unshard()  # the user unsharded one module: the forward reshards it, the summary unshards it again
    unsharded = [type(p).__name__ for p in model[2].parameters()]
    summary(model, (16,), verbose=0)
    result["fsdp_train"]["kept_unsharded"] = unsharded == [type(p).__name__ for p in model[2].parameters()] == [
        "Parameter", "Parameter"] and torch.equal(model[2].weight.detach(), plain[2].weight.detach())
    with torch.no_grad():
        result["fsdp_train"]["same_output_unsharded"] = torch.equal(model(x), out_before)
    model[2].reshard()
    loss = model(x).sum()  # a training step after the summaries: FSDP's state is whole
    loss.backward()
    result["fsdp_train"]["grads"] = all(p.grad is not None for p in model.parameters())

    # all_ranks: one collective, every rank's local figures on every rank, the table on rank 0
    printed = []
    s = summary(model, (16,), all_ranks=True, print_fn=printed.append, format="tree")
    result["all_ranks"] = {"ranks": [[r.rank, r.local_params, r.local_trainable_params, r.local_param_bytes]
                                     for r in s.ranks], "printed": printed,
                           "roundtrip": type(s).from_json(s.to_json()) == s,
                           "classic": s.render("classic")}

    # tensor parallel: Colwise then Rowwise
    torch.manual_seed(0)
    tp = mlp()
    parallelize_module(tp, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    before = _params(tp)
    s = summary(tp, (16,), verbose=0, macs=True)
    result["tp"] = _figures(s) | {"unchanged": _same(before, _params(tp)), "tree": s.render("tree")}

    # tensor parallel built on meta: the fake forward runs through the DTensors as they are
    with torch.device("meta"):
        tp_meta = mlp()
    parallelize_module(tp_meta, mesh, {"0": ColwiseParallel(), "2": RowwiseParallel()})
    s = summary(tp_meta, (16,), device="meta", verbose=0, macs=True)
    result["tp_meta"] = _figures(s)

    # 2-D: tensor parallel inside, FSDP2 over a data-parallel dimension of size 1
    mesh2 = init_device_mesh("cpu", (1, dist.get_world_size()), mesh_dim_names=("dp", "tp"))
    torch.manual_seed(0)
    two = mlp()
    parallelize_module(two, mesh2["tp"], {"0": ColwiseParallel(), "2": RowwiseParallel()})
    fully_shard(two, mesh=mesh2["dp"])
    before = _params(two)
    s = summary(two, (16,), verbose=0, macs=True)
    result["2d"] = _figures(s) | {"unchanged": _same(before, _params(two))}

    # the large-model recipe: built on meta, fully_shard, summarized on meta
    with torch.device("meta"):
        big = mlp()
    for i in (0, 2, 4):
        fully_shard(big[i], mesh=mesh)
    fully_shard(big, mesh=mesh)
    before = _params(big)
    s = summary(big, (16,), device="meta", verbose=0, macs=True)
    result["meta"] = _figures(s) | {"unchanged": _same(before, _params(big)), "device": s.device,
                                    "output_shapes": [list(r.output_shapes) for r in s.layers]}

    # a DTensor buffer: counted global (6 elements), this rank's share (3) beside it
    from torch.distributed.tensor import Shard, distribute_tensor

    buffered = nn.Linear(4, 4)  # 4*4 + 4 = 20 parameters, whole
    buffered.register_buffer("scale", distribute_tensor(torch.arange(6.0), mesh, [Shard(0)]))
    s = summary(buffered, verbose=0)
    result["dtensor_buffer"] = _figures(s) | {
        "sharded": s.sharded, "buffers": [s.buffer_count, s.buffer_bytes, s.local_buffer_count, s.local_buffer_bytes],
        "tree": s.render("tree"), "csv_header": s.render("csv").splitlines()[0]}

    # all_ranks where one rank fails: every rank takes part in the one gather, none waits forever
    class BrokenOnRank0(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)  # 4*4 + 4 = 20

        def forward(self, x):
            if rank == 0:
                raise RuntimeError("boom on rank 0")
            return self.fc(x)

    result["rank_fails"] = {
        "args": _outcome(lambda: summary(nn.Linear(4, 4), (4,) if rank == 0 else (4, "x"), all_ranks=True, verbose=0)),
        "forward": _outcome(lambda: summary(BrokenOnRank0(), (4,), all_ranks=True, verbose=0)),
    }

    # all_ranks on rank 0 while rank 1 has left the job: the broken collective is a clear error.
    # Rank 0 starts only once rank 1's group is gone: data arriving while gloo tears a group down
    # aborts that process ("terminate called without an active exception"), which is not what is tested
    gone = out / "rank1.gone"
    if rank == 1:
        dist.destroy_process_group()
        gone.write_text("")
    else:
        import time

        deadline = time.monotonic() + 60
        while not gone.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        result["peer_gone"] = _outcome(lambda: summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0))

    # the process group destroyed: a clear error before any forward, the model unchanged
    before = _params(model)
    if dist.is_initialized():
        dist.destroy_process_group()
    try:
        summary(model, (16,), verbose=0)
        result["destroyed"] = {"error": None}
    except DeviceError as err:
        result["destroyed"] = {"error": str(err)}
    s = summary(model, verbose=0)  # counts need no process group
    result["destroyed"] |= {"unchanged": _same(before, _params(model)), "total": s.total_params, "local": s.local_params}

    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's netsummary
    main(Path(sys.argv[1]))
    # Everything is written. Leave without the interpreter's teardown: after destroy_process_group
    # with a peer that still sent to it, gloo's C++ state sometimes aborts in its static destructors
    # at exit ("terminate called without an active exception", SIGABRT with no Python frame; about
    # 1 run in 8 on 2 busy cores), which would fail the job after every result was in.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
