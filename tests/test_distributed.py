"""Sharded models: DTensor parameters (FSDP2, tensor parallel, distribute_tensor) and ZeRO-3.

The ``distributed`` tests launch a real 2-process job on CPU
(``python -m torch.distributed.run --standalone --nproc-per-node 2``, gloo), once for the module:
tests/distributed_worker.py runs every scenario and each rank writes its figures as JSON. The
model in every scenario (``distributed_worker.mlp``)::

    Linear(16, 32): 16*32 + 32 = 544     Shard(0) over 2 ranks: 16 rows each -> 16*16 + 16 = 272
    Linear(32, 8):  32*8  + 8  = 264     Shard(0): 4 rows each -> 4*32 + 4 = 132
    Linear(8, 3):   8*3   + 3  = 27      Shard(0) of 3 rows: rank 0 holds 2 -> 2*8 + 2 = 18,
                                                              rank 1 holds 1 -> 1*8 + 1 = 9
    global 835 on every rank;  local: rank 0 272 + 132 + 18 = 422, rank 1 272 + 132 + 9 = 413

The other tests run in this process: a 1-rank gloo world (``HashStore``), hand-built ZeRO-3
parameters, and the bad inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from netsummary import DeviceError, ForwardError, InputSpecError, InputTypeError, RankError, Summary, summary

dist = torch.distributed
needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="torch.distributed with the gloo backend is not available")
WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT_S = 150  # the job takes about 10 s on 2 busy cores; a hang fails cleanly instead


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[list[dict], str]:
    """Run the 2-rank job once: each rank's JSON result, in rank order, and the job's output."""
    out = tmp_path_factory.mktemp("ranks")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(WORKER), str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)  # its own process group: a timeout kills the workers too
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the 2-rank job did not finish within {TIMEOUT_S} s (killed); its output:\n{log[-4000:]}")
    files = [out / f"rank{r}.json" for r in range(2)]
    if proc.returncode != 0 or not all(f.exists() for f in files):
        pytest.fail(f"the 2-rank job failed (exit {proc.returncode}); its output:\n{log[-6000:]}")
    return [json.loads(f.read_text()) for f in files], log


@pytest.fixture(scope="module")
def ranks(job) -> list[dict]:
    return job[0]


LOCAL = [422, 413]  # see the module docstring
SHARDS_RANK0 = {  # layer -> [name, global shape, local shape, placements, mesh shape]
    "0": [["weight", [32, 16], [16, 16], ["Shard(0)"], [2]], ["bias", [32], [16], ["Shard(0)"], [2]]],
    "2": [["weight", [8, 32], [4, 32], ["Shard(0)"], [2]], ["bias", [8], [4], ["Shard(0)"], [2]]],
    "4": [["weight", [3, 8], [2, 8], ["Shard(0)"], [2]], ["bias", [3], [2], ["Shard(0)"], [2]]],
}


@needs_gloo
@pytest.mark.distributed
@pytest.mark.parametrize("scenario", ["fsdp", "fsdp_train", "meta"])
def test_fsdp2_global_totals_and_local_shards(ranks, scenario):
    for rank, result in enumerate(ranks):
        got = result[scenario]
        # global: the same on every rank, equal to the unsharded model's own count
        assert got["total"] == got["trainable"] == 835 == result["unsharded_numel"]
        assert got["param_bytes"] == 835 * 4
        assert (got["local"], got["local_trainable"], got["local_bytes"]) == (LOCAL[rank], LOCAL[rank], LOCAL[rank] * 4)
        assert (got["rank"], got["world_size"], got["mesh_shapes"]) == (rank, 2, [[2]])
        layers = {r["name"]: r for r in got["layers"]}
        assert [(layers[n]["params"], layers[n]["local_params"]) for n in ("0", "2", "4")] == [
            (544, 272), (264, 132), (27, 18 if rank == 0 else 9)]
        assert got["unchanged"] and got["roundtrip"]
    assert {n: r["shards"] for n, r in ((r["name"], r) for r in ranks[0][scenario]["layers"]) if r["shards"]} == SHARDS_RANK0
    assert ranks[1][scenario]["layers"][5]["shards"][0][2] == [1, 8]  # rank 1's one row of Linear(8, 3)


@needs_gloo
@pytest.mark.distributed
def test_fsdp2_forward_runs_and_model_stays_sharded(ranks):
    for result in ranks:
        train = result["fsdp_train"]
        assert train["same_output"] and train["same_as_plain"]  # FSDP's forward all-gathered the real weights
        assert train["grads"]  # a training step after the summaries works: FSDP's state is whole
        assert train["kept_unsharded"] and train["same_output_unsharded"]  # a module the user unsharded stays so
        assert result["fsdp"]["macs"] == 16 * 32 + 32 * 8 + 8 * 3  # 792 per sample, the logical model's
    assert ranks[0]["meta"]["device"] == "meta"
    assert ranks[0]["meta"]["output_shapes"] == [[2, 3], [2, 32], [2, 32], [2, 8], [2, 8], [2, 3]]


@needs_gloo
@pytest.mark.distributed
def test_table_prints_on_rank_zero_only_with_local_columns(ranks):
    (table,) = ranks[0]["fsdp"]["printed"]
    assert ranks[1]["fsdp"]["printed"] == []
    assert "weight [32, 16] → [16, 16] Shard(0), bias [32] → [16] Shard(0)" in table
    assert "Local params (rank 0 of 2)                      422" in table
    assert "Device mesh shape                               [2]" in table


@needs_gloo
@pytest.mark.distributed
def test_tensor_parallel_colwise_rowwise(ranks):
    # Colwise Linear(16, 32): weight Shard(0) [16, 16], bias Shard(0) [16] -> 272;
    # Rowwise Linear(32, 8): weight Shard(1) [8, 16], bias Replicate() [8] -> 128 + 8 = 136;
    # Linear(8, 3) not parallelized: 27 whole.  272 + 136 + 27 = 435 on each rank
    for rank, result in enumerate(ranks):
        tp = result["tp"]
        assert (tp["total"], tp["local"], tp["rank"]) == (835, 435, rank)
        layers = {r["name"]: r for r in tp["layers"]}
        assert layers["2"]["shards"] == [["weight", [8, 32], [8, 16], ["Shard(1)"], [2]],
                                         ["bias", [8], [8], ["Replicate()"], [2]]]
        assert (layers["4"]["local_params"], layers["4"]["shards"]) == (27, [])
        assert tp["unchanged"]
        assert tp["macs"] == 792  # MACs of the logical (global-shape) operators
    assert "weight [8, 32] → [8, 16] Shard(1), bias [8] → [8] Replicate()" in ranks[0]["tp"]["tree"]


@needs_gloo
@pytest.mark.distributed
@pytest.mark.parametrize("scenario", ["tp_meta", "2d"])
def test_tensor_parallel_on_meta_and_with_fsdp2_over_it(ranks, scenario):
    # the same Colwise / Rowwise layout as above (435 local on each rank, 835 global); "2d": FSDP2
    # over a data-parallel mesh dimension of size 1 on top, so the mesh is (dp 1, tp 2)
    for rank, result in enumerate(ranks):
        got = result[scenario]
        assert (got["total"], got["local"], got["rank"], got["macs"]) == (835, 435, rank, 792)
        assert got["roundtrip"]
    layers = {r["name"]: r for r in ranks[0][scenario]["layers"]}
    if scenario == "2d":
        assert ranks[0]["2d"]["unchanged"] and ranks[0]["2d"]["mesh_shapes"] == [[1, 2], [1]]
        assert layers["2"]["shards"] == [["weight", [8, 32], [8, 16], ["Shard(0)", "Shard(1)"], [1, 2]],
                                         ["bias", [8], [8], ["Shard(0)", "Replicate()"], [1, 2]]]
        assert layers["4"]["shards"][0] == ["weight", [3, 8], [3, 8], ["Shard(0)"], [1]]  # FSDP alone, 1 rank
    else:
        assert layers["2"]["shards"][0] == ["weight", [8, 32], [8, 16], ["Shard(1)"], [2]]


@needs_gloo
@pytest.mark.distributed
def test_all_ranks_gathers_every_rank_into_one_table(ranks):
    for result in ranks:  # all_gather_object: every rank gets every rank's figures
        assert result["all_ranks"]["ranks"] == [[0, 422, 422, 1688], [1, 413, 413, 1652]]
        assert result["all_ranks"]["roundtrip"]
    assert ranks[1]["all_ranks"]["printed"] == []
    (table,) = ranks[0]["all_ranks"]["printed"]
    assert "0                  422                422                   1,688" in table
    assert "1                  413                413                   1,652" in table
    classic = ranks[0]["all_ranks"]["classic"]
    assert "Total params: 835\n" in classic  # the classic table keeps torchsummary's layout ...
    assert classic.endswith("1                  413                413                   1,652")  # ... then the ranks


@needs_gloo
@pytest.mark.distributed
def test_dtensor_buffer_counts_global_and_local(ranks):
    # register_buffer("scale", distribute_tensor(arange(6), mesh, [Shard(0)])): 6 elements global
    # (24 bytes), 3 on each rank (12 bytes); the Linear(4, 4)'s 4*4 + 4 = 20 parameters are whole
    for rank, result in enumerate(ranks):
        got = result["dtensor_buffer"]
        assert got["sharded"] and got["buffers"] == [6, 24, 3, 12]
        assert (got["total"], got["local"], got["rank"], got["mesh_shapes"]) == (20, 20, rank, [[2]])
        assert got["roundtrip"]
        assert re.search(r"^Buffers \(elements\) +6$", got["tree"], re.M)  # the totals stay global
        assert re.search(r"^Local buffers \(elements\) +3$", got["tree"], re.M)
        assert re.search(r"^Local buffers size +12 B$", got["tree"], re.M)


@needs_gloo
@pytest.mark.distributed
def test_tensor_parallel_summary_leaves_no_unwaited_collective(job):
    # RowwiseParallel's output is an AsyncCollectiveTensor; the summaries of the tp, tp_meta and
    # 2d scenarios discard it, and torch warns at exit of every collective nobody waited on
    _, log = job
    assert "unwaited collective" not in log


@needs_gloo
@pytest.mark.distributed
def test_all_ranks_when_one_rank_fails_its_arguments(ranks):
    # rank 1 passes input_size (4, "x"): it raises its own InputTypeError after taking part in the
    # gather; rank 0's summary succeeded (Linear(4, 4): 4*4 + 4 = 20) and raises RankError naming rank 1
    error = "InputTypeError: input_size: dimensions must be integers, got str 'x' in (4, 'x')"
    args0, args1 = ranks[0]["rank_fails"]["args"], ranks[1]["rank_fails"]["args"]
    assert (args1["type"], args1["error"]) == ("InputTypeError", error.removeprefix("InputTypeError: "))
    assert args0["type"] == "RankError"
    assert args0["error"].startswith(f"all_ranks=True: rank 1 of 2 failed: {error}. This rank's summary succeeded")
    assert (args0["failed"], args0["collective"]) == ({"1": error}, "torch.distributed.all_gather_object")
    assert args0["ranks"] == [[0, 20]]  # rank 1 reported no figures


@needs_gloo
@pytest.mark.distributed
def test_all_ranks_when_one_rank_fails_its_forward(ranks):
    # rank 0's forward raises: its ForwardError's partial summary gets both ranks' figures (20 each);
    # rank 1 succeeded and raises RankError naming rank 0's ForwardError
    fwd0, fwd1 = ranks[0]["rank_fails"]["forward"], ranks[1]["rank_fails"]["forward"]
    assert (fwd0["type"], fwd0["cause"], fwd0["ranks"]) == ("ForwardError", "RuntimeError", [[0, 20], [1, 20]])
    assert fwd1["type"] == "RankError" and fwd1["ranks"] == [[0, 20], [1, 20]]
    assert fwd1["error"].startswith("all_ranks=True: rank 0 of 2 failed: ForwardError: the model's forward raised in "
                                    "module '(root)' (BrokenOnRank0, call 1): RuntimeError: boom on rank 0. ")
    assert list(fwd1["failed"]) == ["0"] and fwd1["failed"]["0"].startswith("ForwardError: ") and (
        fwd1["failed"]["0"].splitlines()[0].endswith("boom on rank 0"))


@needs_gloo
@pytest.mark.distributed
def test_all_ranks_after_a_rank_left_is_a_clear_error(ranks):
    # rank 1 destroyed its process group; rank 0's gather fails in gloo: wrapped, naming the collective
    got = ranks[0]["peer_gone"]
    assert (got["type"], got["failed"], got["cause"]) == ("RankError", {}, "RuntimeError")
    assert got["error"].startswith("all_ranks=True: the collective torch.distributed.all_gather_object (every "
                                   "rank's figures, on the default process group of 2 ranks) failed on rank 0: "
                                   "RuntimeError: ")
    assert got["error"].endswith("Every rank must call summary(..., all_ranks=True): a rank that exits before it "
                                 "breaks the collective, and a rank that never calls it leaves the others waiting "
                                 "until the process group's timeout (init_process_group(timeout=...), 30 minutes by "
                                 "default)")


@needs_gloo
@pytest.mark.distributed
def test_destroyed_process_group_is_a_clear_error(ranks):
    for rank, result in enumerate(ranks):
        got = result["destroyed"]
        assert got["error"].startswith("parameter '0.weight' is a DTensor (Shard(0)) on a device mesh of shape (2,), "
                                       "but torch.distributed is not initialized (never, or destroyed already): "
                                       "expected a running job")
        assert got["unchanged"]
        assert (got["total"], got["local"]) == (835, LOCAL[rank])  # counting needs no process group


# ---------------------------------------------------------------------------- in this process


@contextlib.contextmanager
def one_rank_world():
    """A 1-rank gloo world in this process (no launcher: an in-memory store), destroyed after."""
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@needs_gloo
def test_distribute_tensor_on_a_one_device_mesh():
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    with one_rank_world() as mesh:
        m = nn.Linear(16, 32)
        m.weight = nn.Parameter(distribute_tensor(m.weight.detach(), mesh, [Shard(0)]))
        m.bias = nn.Parameter(distribute_tensor(m.bias.detach(), mesh, [Replicate()]))
        s = summary(m, verbose=0)
    assert (s.total_params, s.local_params, s.rank, s.world_size, s.mesh_shapes) == (544, 544, 0, 1, ((1,),))
    assert [(sh.name, sh.shape, sh.local_shape, sh.placements) for sh in s.layers[0].shards] == [
        ("weight", (32, 16), (32, 16), ("Shard(0)",)), ("bias", (32,), (32,), ("Replicate()",))]


@needs_gloo
def test_in_place_write_into_a_dtensor_parameter_is_undone():
    from torch.distributed.tensor import Shard, distribute_tensor

    class Doubling(nn.Module):
        def __init__(self, mesh) -> None:
            super().__init__()
            self.weight = nn.Parameter(distribute_tensor(torch.ones(4, 3), mesh, [Shard(0)]))

        def forward(self, x):
            with torch.no_grad():
                self.weight.mul_(2)  # a write into the DTensor (its local shard) during the forward
            return x @ self.weight.to_local().t()

    with one_rank_world() as mesh:
        m = Doubling(mesh)
        weight = m.weight
        s = summary(m, (3,), verbose=0)
        assert m.weight is weight and torch.equal(m.weight.to_local(), torch.ones(4, 3))
        assert (s.total_params, s.local_params, s.layers[0].output_shapes) == (12, 12, (2, 4))


@needs_gloo
def test_destroyed_group_refused_before_the_forward_in_process():
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    with one_rank_world() as mesh:
        model = fully_shard(nn.Sequential(nn.Linear(4, 6), nn.ReLU()), mesh=mesh)
        before = [(id(p), p.to_local().clone()) for p in model.parameters()]
    with pytest.raises(DeviceError, match=r"parameter '0\.weight' is a DTensor \(Shard\(0\)\) on a device mesh of "
                                          r"shape \(1,\), but torch\.distributed is not initialized"):
        summary(model, (4,), verbose=0)
    after = list(model.parameters())
    assert all(isinstance(p, DTensor) for p in after)
    assert len(after) == len(before)
    assert all(i == id(p) and torch.equal(v, p.to_local()) for (i, v), p in zip(before, after))
    assert summary(model, verbose=0).total_params == 4 * 6 + 6  # 30: counts need no process group


def test_all_ranks_outside_a_distributed_run(unchanged):
    model = nn.Linear(3, 2)
    with unchanged(model), pytest.raises(InputSpecError, match=r"all_ranks=True gathers every rank's local figures "
                                         r"with torch\.distributed\.all_gather_object and expected an initialized "
                                         r"process group, but torch\.distributed\.is_initialized\(\) is False"):
        summary(model, (3,), all_ranks=True, verbose=0)
    with pytest.raises(InputTypeError, match=r"all_ranks: expected True .* or False, got 'yes'"):
        summary(model, (3,), all_ranks="yes", verbose=0)


@needs_gloo
def test_all_ranks_on_one_rank_of_an_unsharded_model():
    with one_rank_world():
        s = summary(nn.Linear(3, 2), (3,), all_ranks=True, verbose=0)  # 3*2 + 2 = 8 params, 32 bytes
    assert [(r.rank, r.local_params, r.local_trainable_params, r.local_param_bytes) for r in s.ranks] == [(0, 8, 8, 32)]
    assert not s.sharded and s.local_params is None


@needs_gloo
def test_all_ranks_still_gathers_when_the_forward_fails():
    from netsummary import ForwardError

    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            raise RuntimeError("boom")

    with one_rank_world(), pytest.raises(ForwardError, match="boom") as info:
        summary(Broken(), (3,), all_ranks=True, verbose=0)  # the gather ran first: no rank left waiting
    assert [(r.rank, r.local_params) for r in info.value.partial.ranks] == [(0, 8)]  # 3*2 + 2


class _Broken(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)  # 3*2 + 2 = 8

    def forward(self, x):
        raise RuntimeError("boom")


@needs_gloo
@pytest.mark.parametrize("call, raised, text", [
    (lambda: summary(nn.Linear(4, 4), (4, "x"), all_ranks=True, verbose=0), InputTypeError,
     "InputTypeError: input_size: dimensions must be integers, got str 'x' in (4, 'x')"),
    (lambda: summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0, mode="fast"), InputSpecError, "InputSpecError: "),
    (lambda: summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0, print_fn=42), InputTypeError,
     "InputTypeError: print_fn: expected a callable"),
    (lambda: summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0, device="nonsense"), DeviceError, "DeviceError: "),
    (lambda: summary(_Broken(), (3,), all_ranks=True, verbose=0), ForwardError, "ForwardError: "),
    (lambda: summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0, estimate="everything"), InputSpecError,
     "InputSpecError: "),
], ids=["input_size", "mode", "print_fn", "device", "forward", "estimate"])
def test_every_failing_all_ranks_call_takes_part_in_the_gather_once(monkeypatch, call, raised, text):
    # one rank of a 1-rank world: whatever fails, the one all_gather_object still runs (carrying
    # the error text instead of figures), so the other ranks of a real job are never left waiting
    with one_rank_world():
        sent = []
        real = dist.all_gather_object

        def spy(out, obj, *args, **kwargs):
            sent.append(obj)
            return real(out, obj, *args, **kwargs)

        monkeypatch.setattr(dist, "all_gather_object", spy)
        with pytest.raises(raised) as info:
            call()
    assert type(info.value) is raised  # the rank's own error, not a wrapper
    (obj,) = sent  # exactly one collective
    assert obj["error"].startswith(text) and obj["error"] == f"{raised.__name__}: {info.value}"
    # only a ForwardError has a partial summary to report: 8 params of its Linear(3, 2)
    assert obj["figures"] == ((8, 8, 32) if raised is ForwardError else None)


@needs_gloo
def test_a_successful_all_ranks_call_gathers_once(monkeypatch):
    with one_rank_world():
        sent = []
        real = dist.all_gather_object
        monkeypatch.setattr(dist, "all_gather_object", lambda out, obj, *a, **k: (sent.append(obj), real(out, obj))[1])
        s = summary(nn.Linear(4, 4), (4,), all_ranks=True, verbose=0)
        summary(nn.Linear(4, 4), (4,), verbose=0)  # without all_ranks: nothing is communicated
    assert sent == [{"figures": (20, 20, 80), "error": None}]  # 4*4 + 4 = 20 params, 80 bytes
    assert [(r.rank, r.local_params) for r in s.ranks] == [(0, 20)]


def test_hostile_outputs_cost_bounded_work_once_functional_collectives_are_imported():
    # with torch.distributed._functional_collectives imported (any DTensor program), the summary
    # looks for tensor-parallel outputs to wait on: an output that contains itself, or shares one
    # list at every level (2**40 paths), is walked once per container
    import torch.distributed._functional_collectives  # noqa: F401

    class SelfListing(nn.Module):
        def forward(self, x):
            out = [x]
            out.append(out)
            return out

    class SharedEverywhere(nn.Module):
        def forward(self, x):
            out = [x]
            for _ in range(40):
                out = [out, out]
            return out

    assert summary(SelfListing(), (3,), verbose=0).layers[0].output_shapes == [(2, 3), "<list: cycle>"]
    assert summary(SharedEverywhere(), (3,), verbose=0).total_params == 0


def _zero3(module: nn.Module, world: int = 2, rank: int = 0) -> nn.Module:
    """Partition ``module``'s parameters as DeepSpeed ZeRO-3 leaves them, by hand: the parameter
    empty (``numel() == 0``), its logical size in ``ds_numel`` / ``ds_shape``, this rank's
    flat partition (padded to equal parts) in ``ds_tensor``."""
    for name, p in list(module.named_parameters(recurse=False)):
        part = -(-p.numel() // world)  # ceil: DeepSpeed pads the last partition
        flat = torch.nn.functional.pad(p.detach().flatten(), (0, part * world - p.numel()))
        q = nn.Parameter(torch.empty(0, dtype=p.dtype), p.requires_grad)
        q.ds_numel, q.ds_shape, q.ds_tensor = p.numel(), p.shape, flat[rank * part:(rank + 1) * part].clone()
        setattr(module, name, q)
    return module


def test_zero3_partitioned_parameters_count_by_their_logical_size():
    """DeepSpeed is not installed here: the layout is tested on hand-built parameters that carry
    ZeRO-3's attributes (``ds_numel``, ``ds_shape``, ``ds_tensor``; see ``_zero3``); the real
    library is tested by ``test_zero3_with_deepspeed`` where it is installed."""
    model = nn.Sequential(_zero3(nn.Linear(16, 32)), nn.ReLU(), _zero3(nn.Linear(32, 3)))
    model[2].bias.requires_grad_(False)
    assert sum(p.numel() for p in model.parameters()) == 0  # what a naive count sees
    s = summary(model, verbose=0)
    # 16*32 + 32 = 544;  32*3 + 3 = 99;  total 643, of which the bias 3 frozen
    assert (s.total_params, s.trainable_params, s.non_trainable_params, s.param_bytes) == (643, 640, 3, 643 * 4)
    # partitions of 2: weight 512 -> 256, bias 32 -> 16, weight 96 -> 48, bias 3 -> 2 (padded to 4)
    assert (s.local_params, s.local_trainable_params, s.local_param_bytes) == (322, 320, 322 * 4)
    weight, bias = s.layers[1].shards
    assert (weight.shape, weight.local_shape, weight.placements) == ((32, 16), (256,), ("ZeRO-3",))
    assert (bias.shape, bias.local_shape) == ((32,), (16,))
    assert Summary.from_json(s.to_json()) == s
    text = s.render("tree")
    assert "weight [32, 16] → [256] ZeRO-3, bias [32] → [16] ZeRO-3" in text
    assert "Local params (this rank)" in text  # no process group: the rank is not known


def test_zero3_with_deepspeed():
    deepspeed = pytest.importorskip("deepspeed")
    with one_rank_world():
        with deepspeed.zero.Init(config_dict_or_path={"train_batch_size": 1, "zero_optimization": {"stage": 3}}):
            model = nn.Linear(16, 32)
        s = summary(model, verbose=0)
    assert s.total_params == sum(p.ds_numel for p in model.parameters()) == 16 * 32 + 32  # 544


def test_unsharded_summary_has_no_sharding_fields():
    s = summary(nn.Linear(6, 3), (6,), verbose=0)
    assert (s.sharded, s.local_params, s.rank, s.mesh_shapes, s.ranks, s.layers[0].shards) == (False, None, None, (), (), ())
    assert (s.local_buffer_count, s.local_buffer_bytes) == (None, None)
    data = s.to_dict()
    assert not {"local_params", "rank", "ranks", "mesh_shapes"} & data.keys()
    assert "local_params" not in data["layers"][0] and "local_params" not in s.render("csv")


def test_from_dict_checks_the_sharding_fields():
    s = summary(nn.Sequential(_zero3(nn.Linear(4, 2))), verbose=0)
    data = s.to_dict()
    assert data["local_params"] == 5 and data["layers"][1]["shards"][0]["local_shape"] == [4]  # 8 -> 4;  2 -> 1
    assert "local_params,local_param_bytes,shards" in s.render("csv").splitlines()[0]
    data["layers"][1]["shards"][0]["shape"] = "4x2"
    with pytest.raises(InputSpecError, match=r"layers\[1\]\.shards\[0\]\.shape is '4x2' \(str\), expected a list of ints >= 0"):
        Summary.from_dict(data)
    data = s.to_dict() | {"ranks": [{"rank": 0, "local_params": -1, "local_trainable_params": 0, "local_param_bytes": 0}]}
    with pytest.raises(InputSpecError, match=r"ranks\[0\]\.local_params is -1 \(int\), expected an int >= 0"):
        Summary.from_dict(data)
