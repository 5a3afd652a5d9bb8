"""Mixture-of-experts models: find the routed experts, count total and *active* parameters.

A mixture-of-experts (MoE) layer holds E experts and a router that sends each token to k of them
(top-k), so a token uses only part of the model's parameters. **Active parameters** are the
parameters used per token::

    active = shared + Σ over expert groups g of  P_g × R_g / (E_g × T_g)

where *shared* is every parameter outside the routed experts (embeddings, attention, norms,
routers, DeepSeek's and Qwen-MoE's always-on shared experts, dense layers), P_g the parameter
elements of group g's E_g experts, T_g the tokens that entered the group and R_g the (token,
expert) pairs it processed. With top-k routing R_g = k × T_g, so a group contributes k/E of its
parameters: a Mixtral-8x7B-shaped model has 46,702,792,704 parameters of which 12,879,925,248
are active (shared 1,605,636,096 + 2/8 of 45,097,156,608).

Two layouts of experts are recognized (a pass over the modules, not the parameters):

* **fused** — transformers v5 ``*Experts`` modules (Mixtral, Qwen2/3-MoE, DeepSeek-V3, ...): one
  module with an int ``num_experts`` whose own parameters are stacked per expert, at least one
  of them 3-D, every one with E as its leading dimension (``gate_up_proj [E, 2I, H]``,
  ``down_proj [E, H, I]``). It is called as ``experts(hidden [T, H], top_k_index [T, k],
  top_k_weights [T, k])``.
* **list** — a ``nn.ModuleList`` / ``nn.ModuleDict`` of at least two experts named ``*expert*``
  (not ``shared*``), as hand-written top-k routers, fairseq and transformers v4 hold them; each
  expert is called on the rows routed to it.

A layout alone is not a mixture of experts: a list of layers named ``experts`` that every
token goes through, one after the other, routes nothing. A group found above counts only with
**evidence of routing** (:func:`routed_groups`):

* in a traced run that reached it — listed experts that together processed fewer (token,
  expert) rows than tokens x E, and at least one (0 < R_g < T_g x E: some expert skipped some
  token); fused experts that received routing ids (``top_k_index``). Every listed expert seeing
  every token is routing only when a router declares it (a ``top_k`` / ``num_experts_per_tok``
  of the router, the block or its config, :func:`_top_k`): a **k = E router** sends each token
  to all E experts, so the group stays a mixture of experts whose active parameters are all of
  its parameters (``Active params per token: 1,156 of 1,156 (100.00%; measured ...)``); without
  such a k it is a dense stack or a soft mixture, and no MoE figure is shown;
* with no forward (``"config"``), or a group the run never reached — a router attribute: a
  declared top-k, or a router child of the block (``gate``, ``router``, ``routing``,
  ``switch``). A router child without a top-k leaves the active parameters unknown.

The routing hint on ``meta`` (:func:`routing_hint`) likewise needs a router attribute.

How R_g and T_g are obtained, per summary (:data:`METHODS`):

* ``"measured"`` — counted in the traced run: for fused experts the routing ids the call
  received (``top_k_index``, ids >= E, expert-parallel sentinels, dropped), for listed experts the
  rows each expert's call received, against the rows its MoE block received;
* ``"top-k"`` — on fake tensors (``device="meta"``) no token can be routed: k is the routing
  tensor's last dimension (``top_k_index [T, k]``), every token counted k times;
* ``"config"`` — no forward ran: k from the router's ``top_k`` or the config's
  ``num_experts_per_tok``.

On ``meta``, transformers' experts run ``torch._grouped_mm``, whose fake kernel accepts only
bfloat16 / float16; :class:`GroupedMmStandIn` runs it on bfloat16 stand-ins of the same shapes
and strides and returns the model's own dtype, so shapes, parameters and MACs are those of the
float32 model. Routing that reads values (``nonzero``, ``torch.where`` on the routing mask: the
``"eager"`` experts implementation, hand-written routers) cannot run on fake tensors;
:func:`routing_hint` names the workaround.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import nn
from torch.nn.parameter import Parameter, is_lazy
from torch.nn.modules import module as _module_globals
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["ExpertGroup", "find_experts", "routed_groups", "RoutingProbe", "GroupedMmStandIn", "moe_figures", "routing_hint", "METHODS"]

#: the keys of ``Summary.active_params_method`` (their words: netsummary._reporting.extras)
METHODS = ("measured", "top-k", "config")

_COUNT_ATTRS = ("num_experts", "num_local_experts", "n_routed_experts")
_TOP_K_ATTRS = ("top_k", "num_experts_per_tok", "k", "moe_top_k")


@dataclass(slots=True)
class ExpertGroup:
    """One MoE layer's routed experts: the fused module or the list holding them.

    ``name``: qualified name; ``kind``: ``"fused"`` or ``"list"``; ``experts``: the expert
    modules (the fused module alone, or each listed expert); ``block``: the module whose call
    receives every token of the layer (for a list, the list's parent); ``top_k``: from the
    router's attributes or the config, ``None`` when neither says; ``router``: the block has a
    router child (``gate``, ``router``, ...). ``tokens`` / ``routed`` are
    filled in from the traced run (T_g and R_g of the module docstring), ``measured`` tells
    whether values were counted."""

    name: str
    kind: str
    num_experts: int
    module: nn.Module
    experts: list[nn.Module]
    block: nn.Module | None
    top_k: int | None
    tokens: int = 0
    routed: Fraction = field(default_factory=Fraction)
    measured: bool = False
    rows: list[int] = field(default_factory=list)  # listed experts: rows each expert received
    router: bool = False


def _int_attr(obj: Any, names: tuple[str, ...]) -> int | None:
    for n in names:
        v = getattr(obj, n, None) if not isinstance(obj, nn.Module) else obj.__dict__.get(n)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def _fused_count(m: nn.Module) -> int | None:
    """E for a fused experts module (see the module docstring), else ``None``."""
    for p in m._parameters.values():  # nearly every module stops here: no 3-D parameter
        if p is not None and (type(p) is Parameter or not is_lazy(p)) and p.dim() == 3:  # (a lazy one has no shape)
            break
    else:
        return None
    params = [p for p in m._parameters.values() if p is not None]
    e = _int_attr(m, _COUNT_ATTRS)
    if e is None or e < 2:
        return None
    return e if all(p.dim() >= 2 and p.shape[0] == e for p in params) else None


def _top_k(*owners: Any) -> int | None:
    """k from the first owner that says: a router's ``top_k``, a config's ``num_experts_per_tok``."""
    for o in owners:
        if o is None:
            continue
        k = _int_attr(o, _TOP_K_ATTRS)
        if k is not None:
            return k
        cfg = getattr(o, "config", None) if isinstance(o, nn.Module) else None
        if cfg is not None and not isinstance(cfg, nn.Module):
            k = _int_attr(cfg, ("num_experts_per_tok", "moe_top_k", "top_k"))
            if k is not None:
                return k
    return None


def find_experts(named: list[tuple[str, nn.Module]]) -> list[ExpertGroup]:
    """The routed expert groups of a model, in ``named_modules()`` order (one pass over modules).

    >>> class Experts(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.num_experts = 4
    ...         self.gate_up_proj = nn.Parameter(torch.zeros(4, 16, 8))  # [E, 2I, H]
    ...         self.down_proj = nn.Parameter(torch.zeros(4, 8, 8))      # [E, H, I]
    >>> [(g.name, g.kind, g.num_experts) for g in find_experts(list(nn.ModuleDict({"experts": Experts()}).named_modules()))]
    [('experts', 'fused', 4)]
    """
    by_name = dict(named)
    groups: list[ExpertGroup] = []
    inside: list[str] = []  # a group's subtree is not searched again
    for name, m in named:
        if inside and any(name.startswith(p + ".") for p in inside):
            continue
        e = _fused_count(m)
        parent = by_name.get(name.rpartition(".")[0]) if name and (
            e is not None or isinstance(m, (nn.ModuleList, nn.ModuleDict))) else None
        if e is not None:
            router = _router(parent)
            groups.append(ExpertGroup(name, "fused", e, m, [m], parent, _top_k(router, parent, m),
                                      router=router is not None))
            inside.append(name)
            continue
        if isinstance(m, (nn.ModuleList, nn.ModuleDict)) and "expert" in (last := name.rpartition(".")[2].lower()) \
                and not last.startswith("shared"):
            experts = [c for c in m._modules.values() if c is not None]
            if len(experts) >= 2 and len({type(c) for c in experts}) == 1 and any(
                    p is not None for c in experts for p in c.parameters()):
                router = _router(parent)
                groups.append(ExpertGroup(name, "list", len(experts), m, experts, parent, _top_k(router, parent),
                                          router=router is not None))
                inside.append(name)
    return groups


def _declares_router(g: ExpertGroup) -> bool:
    """A router attribute: a declared top-k, or a router child of the block."""
    return g.top_k is not None or g.router


def routed_groups(groups: list[ExpertGroup], ran: bool) -> list[ExpertGroup]:
    """The groups with evidence of routing (module docstring): after :func:`measure_lists` and
    :func:`top_k_from_calls` when a forward ran (``ran``), else from the router attributes.

    >>> class Stack(nn.Module):  # every token through every expert, no router: not a MoE
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.experts = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
    >>> routed_groups(find_experts(list(Stack().named_modules())), ran=False)
    []
    """
    out = []
    for g in groups:
        if ran and g.tokens:
            if g.kind == "fused":  # it received routing ids: the router chose its experts
                keep = True
            else:
                keep = 0 < g.routed < g.tokens * g.num_experts or g.top_k is not None
        else:  # no forward, or never reached in it
            keep = _declares_router(g)
        if keep:
            out.append(g)
    return out


def _router(block: nn.Module | None) -> nn.Module | None:
    """The block's router child (``gate``, ``router``): it holds ``top_k`` in transformers."""
    if block is None:
        return None
    for n in ("gate", "router", "routing", "switch"):
        c = block._modules.get(n)
        if c is not None:
            return c
    return None


class RoutingProbe:
    """Count the tokens each fused experts module processes, while the forward runs.

    A context manager holding one global forward pre-hook (removed by its handle on exit) that
    reads only the calls of the given groups' fused modules made in the opening thread: it
    counts ``top_k_index``'s ids below E (the (token, expert) pairs routed; expert-parallel
    sentinels are >= E) and the tokens (its first dimension).
    On fake or meta tensors nothing is read (the ids have no values): the group stays unmeasured.
    """

    def __init__(self, groups: list[ExpertGroup]) -> None:
        self._fused = {id(g.module): g for g in groups if g.kind == "fused"}
        self._handle: Any = None

    def __enter__(self) -> RoutingProbe:
        fused, thread = self._fused, threading.get_ident()
        if not fused:
            return self

        def pre_hook(module: nn.Module, args: tuple) -> None:
            g = fused.get(id(module))
            if g is None or threading.get_ident() != thread:
                return
            ids = next((a for a in args if isinstance(a, torch.Tensor) and not a.is_floating_point()
                        and a.dim() >= 1), None)
            if ids is None or ids.device.type == "meta" or _is_fake(ids):
                return
            with torch.no_grad():
                flat = ids.reshape(-1)
                routed = int((flat < g.num_experts).sum()) if flat.numel() else 0
            g.tokens += ids.shape[0] if ids.dim() > 1 else flat.numel()
            g.routed += routed
            g.measured = True

        self._handle = _module_globals.register_module_forward_pre_hook(pre_hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


_GROUPED_MM = torch.ops.aten._grouped_mm.default
_FAKE_OK = (torch.bfloat16, torch.float16)


class GroupedMmStandIn(TorchDispatchMode):
    """On fake tensors, run ``aten._grouped_mm`` of a float32 (or float64) model on bfloat16
    stand-ins of the same shapes and strides, and return its result in the model's dtype.

    The op's fake kernel (torch 2.14) accepts only bfloat16 / float16 although the CPU kernel
    runs float32; the output's shape depends only on the operands' shapes (see
    :func:`netsummary._analysis.flops._grouped_mm`), so the stand-in changes no shape, no
    parameter count and no MAC count, and no memory is used (fake tensors). Every other op, and
    real tensors, pass through untouched. Dispatch modes are per thread.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # as MacCounter: else torch wraps __torch_dispatch__ in _disable_dynamo, which imports
        # torch._dynamo (about a second) on the first op; the summary runs eager modules
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func is _GROUPED_MM and len(args) >= 2:
            a, b = args[0], args[1]
            if a.dtype not in _FAKE_OK and a.dtype.is_floating_point and (_is_fake(a) or a.device.type == "meta"):
                out_dtype = kwargs.get("out_dtype")
                rest = {k: v for k, v in kwargs.items() if k != "out_dtype"}
                try:
                    out = func(a.to(torch.bfloat16), b.to(torch.bfloat16), *args[2:], **rest)
                except Exception:  # noqa: BLE001 - torch's own check fails: let the real call say why
                    return func(*args, **kwargs)
                return out.to(out_dtype or a.dtype)
        return func(*args, **kwargs)


def measure_lists(groups: list[ExpertGroup], calls: list) -> None:
    """Fill in the tokens and routed rows of listed experts from the tracer's calls: an expert's
    rows are the leading dimensions of its first input tensor, the block's tokens those of its."""
    if not any(g.kind == "list" for g in groups):
        return
    rows_of: dict[int, int] = {}
    watched: dict[int, list[ExpertGroup]] = {}
    for g in groups:
        if g.kind == "list":
            for m in [*g.experts, g.block]:
                if m is not None:
                    watched.setdefault(id(m), []).append(g)
    for c in calls:
        if id(c.module) not in watched or c.inp is None or not c.inp.shapes:
            continue
        shape = c.inp.shapes[0]
        rows_of[id(c.module)] = rows_of.get(id(c.module), 0) + (_rows(shape))
    for g in groups:
        if g.kind != "list" or g.block is None or id(g.block) not in rows_of:
            continue
        g.tokens = rows_of[id(g.block)]
        g.rows = [rows_of.get(id(e), 0) for e in g.experts]
        g.routed = Fraction(sum(g.rows))
        g.measured = True


def _rows(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape[:-1]:
        n *= d
    return n


def top_k_from_calls(groups: list[ExpertGroup], calls: list) -> None:
    """Fused groups the probe did not measure (fake tensors): k from the routing tensor's shape
    ``top_k_index [T, k]`` the call received (its second tensor input), T its first dimension."""
    for g in groups:
        if g.kind != "fused" or g.measured:
            continue
        for c in calls:
            if c.module is g.module and c.inp is not None and len(c.inp.shapes) >= 2:
                hidden, index = c.inp.shapes[0], c.inp.shapes[1]
                if len(index) == 2:
                    g.tokens += index[0]
                    g.routed += index[0] * index[1]
                    g.top_k = index[1]


@dataclass(frozen=True, slots=True)
class MoeFigures:
    """``expert_params``: routed-expert parameter elements; ``active_params``: parameters used
    per token (elements, rounded to the nearest); ``method``: a key of :data:`METHODS`."""

    expert_params: int
    active_params: int | None
    method: str | None


def moe_figures(groups: list[ExpertGroup], total_params: int, params_of: Any, ran: bool) -> MoeFigures | None:
    """Total routed-expert parameters and active parameters (see the module docstring).

    ``params_of(modules)``: unique parameter elements of those modules' subtrees. ``ran``: a
    forward ran (else k comes from the config). ``None`` when the model has no experts."""
    if not groups:
        return None
    expert_params = params_of([g.module for g in groups])
    active = Fraction(total_params - expert_params)
    methods = set()
    for g in groups:
        p = params_of([g.module])
        if ran and g.tokens:
            if g.kind == "list" and g.rows:
                # listed experts may differ in size: each expert's rows times its own parameters
                active += Fraction(sum(n * params_of([e]) for n, e in zip(g.rows, g.experts)), g.tokens)
            else:
                active += Fraction(p) * g.routed / (g.num_experts * g.tokens)
            methods.add("measured" if g.measured else "top-k")
        elif not ran and g.top_k is not None:
            active += Fraction(p * g.top_k, g.num_experts)
            methods.add("config")
        else:  # ran but the group was never reached, or no k is known
            return MoeFigures(expert_params, None, None)
    method = "measured" if methods == {"measured"} else "top-k" if "top-k" in methods else methods.pop()
    return MoeFigures(expert_params, round(active), method)


def routing_hint(err: BaseException, groups: list[ExpertGroup], failed_module: nn.Module | None) -> str | None:
    """The hint for a forward on ``meta`` that failed in a MoE layer's routing (``nonzero`` /
    ``torch.where`` on the routing mask need values), else ``None``."""
    if not groups or failed_module is None:
        return None
    groups = [g for g in groups if _declares_router(g)]
    inside = {id(m) for g in groups for m in [g.module, *g.experts, *([g.block] if g.block is not None else [])]}
    if id(failed_module) not in inside:
        return None
    why = ("mixture-of-experts routing picks each expert's tokens by value (nonzero / torch.where on the routing "
           "mask), which fake tensors on the meta device cannot do")
    device = 'summarize on a real device (device="cpu")'
    if any(g.kind == "fused" and failed_module in (g.module, g.block) for g in groups):
        return (f"{why}. Either switch the transformers experts to the grouped matmul, which runs on meta: "
                'model.set_experts_implementation("grouped_mm") (or experts_implementation="grouped_mm" when '
                f"loading), or {device}, with a smaller config if the model is too large")
    # a hand-written router: no implementation of it runs on meta
    return f"{why}: {device} instead, with smaller sizes if the model is too large"
