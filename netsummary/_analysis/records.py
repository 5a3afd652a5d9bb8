"""Records: freeze the tracer's calls into LayerRecords and count parameters, into a Summary.

:func:`build_structure_summary` makes the summary of a model without a forward (no input given,
or a class without ``forward``): the module tree and its parameters, nothing run.

Counting is one pass over the model's modules (:class:`~netsummary._analysis.count.ParamStats`); byte and
MAC figures are for the batch as shown (one sample when the batch is shown as ``-1``), using the
batch axes of :mod:`netsummary._tracing.batch`.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from torch.nn.parameter import is_lazy

from .._tracing.batch import BatchAxes, per_shown_batch
from .count import ParamStats, TensorCounts
from .formula import param_formula
from .sharding import record_fields, summary_fields
from .._tracing.inputs import ForwardInputs
from .._tracing.structure import Described, describe
from .._summary import LayerRecord, ParamGroup, Summary
from .._tracing.trace import Tracer

_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _record_maker(positional: tuple[str, ...] = ()):
    """A constructor of :class:`LayerRecord` taking the same arguments, about twice as fast
    (keyword arguments), or taking the fields named in ``positional`` in that order, positionally
    (faster still: no keyword dict per record), with every other field at its default.

    The dataclass's own ``__init__`` of a frozen class sets each of its fields through
    ``object.__setattr__``; this one (generated the way :mod:`dataclasses` generates ``__init__``)
    stores them through the slots' own descriptors. Same fields, same defaults, same object
    (``tests/test_pure.py`` compares the two)."""
    fields = dataclasses.fields(LayerRecord)
    ns: dict = {"_new": object.__new__, "_cls": LayerRecord}
    params = []
    body = []
    for f in fields:
        ns[f"_set_{f.name}"] = LayerRecord.__dict__[f.name].__set__
        assert f.default_factory is dataclasses.MISSING, f.name  # noqa: S101 - none has a factory
        if f.default is not dataclasses.MISSING:
            ns[f"_d_{f.name}"] = f.default
        if positional:
            assert f.name in positional or f.default is not dataclasses.MISSING, f.name  # noqa: S101
            body.append(f"    _set_{f.name}(o, {f.name if f.name in positional else f'_d_{f.name}'})\n")
        else:
            params.append(f"{f.name}=_d_{f.name}" if f.default is not dataclasses.MISSING else f.name)
            body.append(f"    _set_{f.name}(o, {f.name})\n")
    signature = ", ".join(positional) if positional else f"*, {', '.join(params)}"
    src = f"def make_record({signature}):\n    o = _new(_cls)\n{''.join(body)}    return o\n"
    exec(src, ns)  # noqa: S102 - generated from the dataclass's own field list, as dataclasses does
    return ns["make_record"]


make_record = _record_maker()
#: The fields of a record of a model without quantized or sharded tensors, in this order.
_PLAIN_FIELDS = ("index", "name", "type", "call_index", "depth", "parent", "is_leaf", "input_shapes",
                 "output_shapes", "input_dtypes", "output_dtypes", "output_bytes", "params", "trainable_params",
                 "param_bytes", "shared_params", "completed", "macs", "unknown_ops", "kernel_shape", "formula",
                 "input_batch_axes", "output_batch_axes", "created")
make_plain_record = _record_maker(_PLAIN_FIELDS)


def dtype_names(d: Described | None) -> tuple[str, ...]:
    """``("float32", "int64")``: dtype names without the ``torch.`` prefix."""
    if d is None:
        return ()
    names = _DTYPE_NAMES
    dtypes = d.dtypes
    if len(dtypes) == 1 and dtypes[0] in names:  # the common case, without a generator
        return (names[dtypes[0]],)
    return tuple(names.get(t) or names.setdefault(t, str(t).removeprefix("torch.")) for t in dtypes)


def _facts(memo: dict, d: Described | None, heuristic, rb: int | None) -> tuple:
    """``(dtype names, batch axes, bytes as shown)`` of a value whose axes come from its shapes
    alone, memoized by the (shared, immutable) Described."""
    if d is None:
        return (), (), 0
    got = memo.get(id(d))
    if got is None:
        ax = heuristic(d)
        got = memo[id(d)] = (dtype_names(d), ax, per_shown_batch(d, ax, rb))
    return got


def _own_tree(d: Described | None):
    """A record's own copy of a shape tree's top-level list (the tracer shares one Described
    between calls that saw the same value; a list a user edits on one record stays on that one)."""
    if d is None:
        return None
    tree = d.tree
    return tree.copy() if type(tree) is list else tree


def build_summary(
    model: nn.Module,
    named: list[tuple[str, nn.Module]],
    tracer: Tracer,
    inputs: ForwardInputs,
    dev: torch.device,
    mode: str,
    complete: bool,
    count_macs: bool,
    formulas: bool,
    axes: BatchAxes,
) -> Summary:
    """Freeze the tracer's calls into records and count parameters in one pass over the model."""
    stats = ParamStats(named)
    b = inputs.batch_size
    rb = axes.run_batch  # set only when the batch is shown as -1: figures are then per sample
    per_sample = rb or 1
    total_macs = 0
    unknown: dict[str, None] = {}
    counted: set[int] = set()  # parameter ids already shown in an earlier leaf row
    layers: list[LayerRecord] = []
    called: set[int] = set()
    output_bytes = 0
    calls = tracer.calls
    created = _CreatedModules(model, stats) if tracer.created else None
    plain = stats.plain  # no quantized or sharded tensor: no record needs their fields
    # A Described is immutable and the tracer shares one per (shape, dtype) seen: its dtype names,
    # batch axes (unless the probe ran for this call) and bytes as shown are worked out once
    facts: dict[int, tuple] = {}
    heuristic, probed_call, known = axes.heuristic, axes.probed, axes.known
    counted_of, kernel_shape = stats.counted, _kernel_shape
    for i, c in enumerate(calls):
        inp, out, module = c.inp, c.out, c.module
        leaf = c.n_children == 0
        name, type_name = c.name, type(module).__name__
        if c.created:  # made during the forward: its own parameters are outside the totals
            assert created is not None
            name = created.name(module, c.name)
            type_name += " (created in forward)"
            ids, counts = created.ids_of(module)
        else:
            called.add(id(module))
            ids, counts = counted_of(module)
        shared = 0
        call_macs = None
        unknown_ops = c.unknown_ops
        if count_macs:
            if leaf and not c.macs and not unknown_ops and (counts.quant_bytes or counts.unknown):
                unknown_ops = (quantized_kernel_op(module),)  # a kernel torch's dispatcher never saw
            unknown.update(dict.fromkeys(unknown_ops))
            call_macs = c.macs // per_sample  # the run's MACs shared out per sample
            total_macs += call_macs
        probe = probed_call(i, module)
        if probe is None and known and i in known:  # a stock layer's own axes (see .batch.stock_axes)
            in_axes, out_axes = known[i]
            in_names, out_names = dtype_names(inp), dtype_names(out)
            call_bytes = 0 if out is None else per_shown_batch(out, out_axes, rb)
        elif probe is None:
            in_names, in_axes, _ = _facts(facts, inp, heuristic, rb)
            out_names, out_axes, call_bytes = _facts(facts, out, heuristic, rb)
        else:
            in_axes, out_axes = axes.compared(inp, out, probe)
            in_names, out_names = dtype_names(inp), dtype_names(out)
            call_bytes = 0 if out is None else per_shown_batch(out, out_axes, rb)
        if leaf:
            if not counted.isdisjoint(ids):
                both = ids & counted
                shared = counts.numel if both == ids else created.count(both) if c.created else stats.count(both).numel
            counted |= ids
            output_bytes += call_bytes
        values = (i, name, type_name, c.call_index, c.depth, None if c.parent < 0 else c.parent, leaf,
                  _own_tree(inp), _own_tree(out), in_names, out_names, call_bytes, counts.numel, counts.trainable,
                  counts.nbytes, shared, out is not None, call_macs, unknown_ops, kernel_shape(module),
                  _formula(module, stats) if formulas and leaf else None, in_axes, out_axes, c.created)
        if plain:
            layers.append(make_plain_record(*values))
        else:
            layers.append(make_record(**dict(zip(_PLAIN_FIELDS, values)),
                                      **_special_fields(stats, counts, ids, module, c.created)))
    # the forward's inputs: positional arguments, then a dict of the keyword ones (names kept)
    in_desc = describe([*inputs.args, inputs.kwargs] if inputs.kwargs else list(inputs.args))
    in_axes = axes.of_inputs(in_desc, len(inputs.args))
    return Summary(
        model_type=type(model).__name__,
        layers=tuple(layers),
        other_params=_other_params(model, stats, counted, called, formulas),
        **_totals(stats),
        **summary_fields(stats),
        input_bytes=per_shown_batch(in_desc, in_axes, rb),
        output_bytes=output_bytes,
        input_shapes=in_desc.tree,
        input_dtypes=dtype_names(in_desc),
        input_batch_axes=in_axes,
        batch_size=b,
        run_batch_size=inputs.run_batch,
        device=str(dev),
        mode=mode,
        complete=complete,
        uninitialized=tuple(stats.uninitialized),
        total_macs=total_macs if count_macs else None,
        unknown_ops=tuple(unknown),
    )


def build_structure_summary(
    model: nn.Module,
    named: list[tuple[str, nn.Module]],
    dev: torch.device,
    mode: str,
    batch_size: int,
    formulas: bool,
) -> Summary:
    """A summary without a forward: one record per module of ``named`` (``named_modules()``
    order), parameters only. Shapes, MACs and activation bytes are unknown (``None``, ``None``,
    0) and the summary says so (``forward_ran=False``); totals come from the unique tensors as
    always, and a tied weight's second leaf is marked shared, as after a forward."""
    stats = ParamStats(named)
    index = {name: i for i, (name, _) in enumerate(named)}
    # a module whose children are all listed under another parent (shared) stays a leaf here
    has_child = {name.rpartition(".")[0] for name, _ in named[1:]}
    counted: set[int] = set()
    layers: list[LayerRecord] = []
    for i, (name, m) in enumerate(named):
        parent = None if i == 0 else index[name.rpartition(".")[0]]
        leaf = name not in has_child
        ids = stats.ids_of(m)
        counts = stats.count(ids)
        shared = 0
        if leaf:
            if not counted.isdisjoint(ids):
                shared = stats.count(ids & counted).numel
            counted |= ids
        layers.append(
            LayerRecord(
                index=i, name=name, type=type(m).__name__, call_index=1,
                depth=0 if parent is None else layers[parent].depth + 1, parent=parent, is_leaf=leaf,
                input_shapes=None, output_shapes=None, input_dtypes=(), output_dtypes=(), output_bytes=0,
                params=counts.numel, trainable_params=counts.trainable, param_bytes=counts.nbytes,
                shared_params=shared, kernel_shape=_kernel_shape(m),
                formula=_formula(m, stats) if formulas and leaf else None,
                **_special_fields(stats, counts, ids, m, created=False),
            )
        )
    every = {id(m) for _, m in named}  # every module has its row: own parameters are shown there
    return Summary(
        model_type=type(model).__name__,
        layers=tuple(layers),
        other_params=_other_params(model, stats, counted, every, formulas),
        **_totals(stats),
        **summary_fields(stats),
        input_bytes=0,
        output_bytes=0,
        input_shapes=[],
        input_dtypes=(),
        batch_size=batch_size,
        run_batch_size=None,
        device=str(dev),
        mode=mode,
        uninitialized=tuple(stats.uninitialized),
        forward_ran=False,
    )


class _CreatedModules:
    """Names and parameters of the modules made during the forward: not counted in the totals."""

    def __init__(self, model: nn.Module, stats: ParamStats) -> None:
        self._model = model
        self._stats = stats
        self._names: dict[int, str] | None = None
        self._ids: dict[int, tuple[frozenset[int], TensorCounts]] = {}
        self._numel: dict[int, int] = {}

    def name(self, module: nn.Module, provisional: str) -> str:
        """Its qualified name if the forward registered it in the model, else ``provisional``."""
        if self._names is None:
            self._names = {}
            for n, m in self._model.named_modules():  # the model as the forward left it
                self._names.setdefault(id(m), n)
        return self._names.get(id(module), provisional)

    def ids_of(self, module: nn.Module) -> tuple[frozenset[int], TensorCounts]:
        """The parameters in its subtree that are not the model's (those count where they belong)."""
        got = self._ids.get(id(module))
        if got is None:
            model_ids = self._stats.owner
            new = {id(p): p for p in module.parameters() if id(p) not in model_ids}
            n = t = b = 0
            for p in new.values():
                k = 0 if is_lazy(p) else p.numel()
                n += k
                t += k if p.requires_grad else 0
                b += 0 if is_lazy(p) else k * p.element_size()
            self._numel.update((i, 0 if is_lazy(p) else p.numel()) for i, p in new.items())
            got = self._ids[id(module)] = (frozenset(new), TensorCounts(n, t, b))
        return got

    def count(self, ids: frozenset[int]) -> int:
        """Elements of the given parameters (ids from :meth:`ids_of`)."""
        return sum(self._numel[i] for i in ids)


def _totals(stats: ParamStats) -> dict[str, int]:
    """The summary's totals, from the unique tensors (never from the rows)."""
    params, buffers = stats.params, stats.buffers
    out = dict(total_params=params.numel, trainable_params=params.trainable,
               non_trainable_params=params.numel - params.trainable, param_bytes=params.nbytes,
               buffer_count=buffers.numel, buffer_bytes=buffers.nbytes)
    if params.quant_bytes or params.unknown:  # quantized weights (see netsummary._analysis.quantized)
        out.update(quantized_params=params.quant_numel, quantized_bytes=params.quant_bytes,
                   quant_state_bytes=params.state_bytes, quant_unknown=tuple(stats.quant_unknown),
                   quant_dtypes=params.labels)
    return out


_NO_QUANT: dict = {}


def quantized_kernel_op(module: nn.Module) -> str:
    """The "operator without a formula" of a quantized layer whose forward ran no operator that
    was counted (a custom kernel called outside torch's dispatcher, as GPTQ/AWQ CUDA extensions
    are): its MACs are unknown, never a silent 0."""
    return f"{type(module).__name__} (quantized layer: no counted operator seen)"


def _formula(module: nn.Module, stats: ParamStats) -> str:
    """A leaf's formula: from the logical shapes for a quantized layer, else :func:`param_formula`."""
    return stats.quant_formula(module) or param_formula(module).text


def _special_fields(stats: ParamStats, counts: TensorCounts, ids: frozenset[int], module: nn.Module,
                    created: bool) -> dict:
    """A record's quantized-weight and sharding fields."""
    fields = quant_fields(counts)
    return fields if created else {**fields, **record_fields(stats, ids, module)}


def quant_fields(c: TensorCounts) -> dict:
    """A record's quantized-weight fields (none for a layer without quantized weights)."""
    if not (c.quant_bytes or c.unknown):
        return _NO_QUANT
    return dict(quant_params=c.quant_numel, quant_bytes=c.quant_bytes, quant_state_bytes=c.state_bytes,
                quant_unknown=c.unknown, quant_dtype=", ".join(c.labels) or None)


def _kernel_shape(module: nn.Module) -> tuple[int, ...] | None:
    k = module.__dict__.get("kernel_size")
    if k is None:
        return None
    return tuple(k) if isinstance(k, (tuple, list)) else (int(k),)


def _other_params(
    model: nn.Module, stats: ParamStats, counted: set[int], called: set[int], formulas: bool
) -> tuple[ParamGroup, ...]:
    """Parameters no leaf row shows, grouped by owning module, so that rows add up to the totals."""
    groups: dict[str, list[int]] = {}
    for pid, owner in stats.owner.items():
        if pid not in counted:
            groups.setdefault(owner, []).append(pid)
    out = []
    for name, ids in groups.items():
        module = model.get_submodule(name) if name else model
        c = stats.count(ids)
        text = None
        if formulas:  # the tensors' own shapes, e.g. "temperature[1]"
            own = {id(p): n for n, p in module._parameters.items() if p is not None}
            text = " + ".join(f"{own.get(i) or stats.tensor_names.get(i, '?')}[{', '.join(map(str, stats.shape(i)))}]"
                              for i in ids)
        out.append(ParamGroup(name, type(module).__name__, c.numel, c.trainable, c.nbytes, id(module) in called, text))
    return tuple(out)


