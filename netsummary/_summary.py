"""The summary as frozen data: one :class:`LayerRecord` per module call, and model-wide totals.

Records hold ints in base units (elements, bytes) and shapes as shape trees (see
:mod:`netsummary._tracing.structure`); no tensors are kept alive. Only the renderers make strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._reporting.render import render_classic

if TYPE_CHECKING:
    from ._memory.estimate import MemoryEstimate
from ._tracing.structure import ShapeTree


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One executed module call, in call order (the order the calls began); in a summary without
    a forward (:attr:`Summary.forward_ran` false), one module of the tree.

    Attributes:
        index: position in :attr:`Summary.layers`.
        name: qualified name, the state_dict prefix (``"features.0"``; ``""`` for the root).
        type: the module's class name (``"Conv2d"``).
        call_index: 1 for the module's first call in the forward, 2 for its second, ...
        depth: 0 for the root call, 1 for calls made directly inside it, ...
        parent: index of the enclosing call's record, ``None`` for the root call.
        is_leaf: no other recorded call ran inside this one (the rows of the classic table).
        input_shapes: shape tree of the positional then keyword arguments, as run.
        output_shapes: shape tree of the output, as run (``None`` if the call raised).
        input_dtypes / output_dtypes: dtype names of the tensor leaves, in tree order.
        output_bytes: bytes of every tensor in the output (``numel * element_size``) for the
            batch as shown: one sample when the summary shows the batch as ``-1``.
        params / trainable_params / param_bytes: the module's unique parameters, its
            descendants' included (elements, elements, bytes).
        shared_params: for leaf calls, how many of ``params`` an earlier leaf call already
            counted (the same module called again, or a tied weight); totals count them once.
        completed: ``False`` for a call that raised (only in a failed summary's partial data).
        macs: multiply-accumulates of the operators this call ran itself (its children's are on
            their own records), for the batch as shown; ``None`` when MACs were not counted. With
            ``unknown_ops`` it is a lower bound.
        unknown_ops: matmul-class operators this call ran that have no formula (not counted).
        kernel_shape: the module's ``kernel_size`` (convolutions, pooling), else ``None``.
        formula: how ``params`` arises, e.g. ``"128 × (3 × 4 × 4) + 128"``; ``None`` unless
            formulas were asked for.
        input_batch_axes / output_batch_axes: when the batch is shown as ``-1``, the batch axis
            of each tensor leaf in tree order (``None``: no batch axis); else ``()``.
        created: the module was not part of the model when the summary started: the forward
            made it (a head built on first use, a throwaway ``nn.Linear(...)(x)``). ``type``
            then ends in ``" (created in forward)"``; ``name`` is its qualified name if the
            forward registered it in the model, else ``"<parent's name>.<created>"``; ``params``
            are its parameters that are not the model's, and are outside the summary's totals.
        quant_params / quant_bytes / quant_state_bytes: quantized weights in the subtree (see
            :mod:`netsummary._analysis.quantized`): their logical elements (part of ``params``),
            their stored bytes, packed (part of ``param_bytes``), and the bytes of their
            quantization state (scales, zero points, absmax; in neither). 0 without any.
        quant_unknown: quantized layers in the subtree whose layout netsummary does not know:
            their stored bytes are in ``param_bytes``, their logical elements in no count
            (``params`` is then a lower bound; the tables say "unknown").
        quant_dtype: how the quantized weights are stored, e.g. ``"int8"``, ``"int4 packed"``,
            ``"int4 packed, int8"`` for several; ``None`` without any.
        local_params / local_param_bytes: in a summary of a sharded model (:attr:`Summary.sharded`),
            the elements and bytes of ``params`` that this rank holds (a DTensor's ``to_local()``,
            a ZeRO-3 parameter's partition); ``None`` otherwise. ``params`` stays the global count.
        shards: the sharded parameters the module holds itself (a leaf's), one
            :class:`ParamShard` each: global and local shape, placements, mesh shape.
    """

    index: int
    name: str
    type: str
    call_index: int
    depth: int
    parent: int | None
    is_leaf: bool
    input_shapes: ShapeTree
    output_shapes: ShapeTree
    input_dtypes: tuple[str, ...]
    output_dtypes: tuple[str, ...]
    output_bytes: int
    params: int
    trainable_params: int
    param_bytes: int
    shared_params: int = 0
    completed: bool = True
    macs: int | None = None
    unknown_ops: tuple[str, ...] = ()
    kernel_shape: tuple[int, ...] | None = None
    formula: str | None = None
    input_batch_axes: tuple[int | None, ...] = ()
    output_batch_axes: tuple[int | None, ...] = ()
    created: bool = False
    quant_params: int = 0
    quant_bytes: int = 0
    quant_state_bytes: int = 0
    quant_unknown: int = 0
    quant_dtype: str | None = None
    local_params: int | None = None
    local_param_bytes: int | None = None
    shards: tuple[ParamShard, ...] = ()


@dataclass(frozen=True, slots=True)
class ParamGroup:
    """Parameters that no leaf call accounts for, grouped by the module that owns them.

    For example a ``nn.Parameter`` registered on the root or on a container (``called``: the
    module ran, and the classic table shows them on its own call's row, in call order), or the
    parameters of a module the forward never called (``called`` false: the classic table lists
    them after the rows, ``(not called)``). Listing them lets the table's rows add up to the totals.
    """

    name: str
    type: str
    params: int
    trainable_params: int
    param_bytes: int
    called: bool
    formula: str | None = None


@dataclass(frozen=True, slots=True)
class AdapterGroup:
    """The parameters of one named PEFT adapter (``"default"``, or the name given to
    ``add_adapter``): its LoRA matrices, prompt encoder, ``modules_to_save`` copies, ...

    ``params`` / ``trainable_params`` / ``param_bytes``: unique elements, of which trainable
    (``requires_grad``), and bytes at their own dtypes. ``active``: the forward runs it: it is one
    of the model's ``active_adapters`` and not disabled. ``peft_type``: its config's
    ``peft_type`` (``"LORA"``, ``"PREFIX_TUNING"``, ...), ``""`` when unknown. ``disabled``: peft
    has the adapter switched off (inside ``model.disable_adapter()``, after
    ``disable_adapter_layers()`` / transformers' ``disable_adapters()``): see
    :mod:`netsummary._analysis.adapters`.
    """

    name: str
    params: int
    trainable_params: int
    param_bytes: int
    active: bool = True
    peft_type: str = ""
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    """What is inside a model, measured on one forward pass (or, without one, its parameters
    alone: see ``forward_ran``).

    Byte fields are for the batch as shown: with ``input_size`` and ``batch_size=-1`` that is one
    sample (torchsummary's meaning), otherwise the batch that ran.

    Attributes:
        model_type: the root module's class name.
        layers: one :class:`LayerRecord` per executed module call, containers included.
        other_params: parameters outside every leaf call, by owning module.
        total_params / trainable_params / non_trainable_params: unique parameter elements;
            ``trainable_params + non_trainable_params == total_params``; trainability is per tensor.
        param_bytes: bytes of the unique parameters, each at its own dtype.
        buffer_count / buffer_bytes: elements and bytes of the unique buffers (BatchNorm running
            statistics, ...), reported apart from parameters.
        input_bytes: bytes of the forward's input tensors.
        output_bytes: bytes of every leaf call's output; the classic table's
            "Forward/backward pass size" is twice this.
        input_shapes / input_dtypes: the forward's inputs (positional then keyword), as run.
        batch_size: the batch as shown: ``-1`` (any) or the number of samples.
        run_batch_size: the batch the forward ran with when inputs were generated, else ``None``.
        device: where the forward ran (``"cpu"``, ``"cuda:0"``, ``"meta"``).
        mode: ``"eval"``, ``"train"`` or ``"same"``.
        complete: ``False`` for the partial summary attached to a :class:`~netsummary.ForwardError`.
        uninitialized: qualified names of lazy parameters that were never materialized.
        total_macs: multiply-accumulates of the whole forward for the batch as shown (FLOPs =
            2 × MACs, matmul-class operators only); ``None`` when not counted. It is the sum of
            the records' ``macs``. With ``batch_size=-1`` it is the 2-sample run's count divided
            by 2: exact when every operator works on the batch; an operator on weights alone
            (swin_v2's position-bias MLP) is halved too, so pass ``batch_size=1`` for figures to
            compare digit for digit with published single-image ones. Operators without a
            formula are listed in ``unknown_ops`` and not included: the total is then a lower
            bound.
        unknown_ops: matmul-class operators that ran without a formula.
        forward_ran: ``False`` when no forward was run (``summary(model)`` without an input, or a
            model whose class defines no ``forward``: ``nn.ModuleList``, ``nn.ModuleDict``, a
            module holding only ``nn.Parameter`` attributes). Then ``layers`` is the module tree,
            one record per module in ``named_modules()`` order (``depth``/``parent`` from the qualified names,
            ``call_index`` 1, shapes ``None``, ``macs`` ``None``), every module's own parameters
            count as shown on its row (``ParamGroup.called`` true), ``total_macs`` is ``None`` and
            ``input_bytes`` / ``output_bytes`` are 0: unknown, and rendered as ``--``.
        expert_params: for a mixture-of-experts model, the parameter elements of its routed
            experts (shared experts, routers and everything else are outside); ``None`` for
            other models.
        active_params: for a mixture-of-experts model, the parameters used per token:
            ``total_params - expert_params`` plus, per MoE layer, its experts' parameters times
            the experts each token went to over the number of experts (k/E for top-k routing);
            elements, rounded to the nearest. ``None`` for other models, or when no routing is
            known (see :mod:`netsummary._analysis.experts`).
        active_params_method: how ``active_params`` was obtained: ``"measured"`` (the tokens each
            expert processed in the traced run), ``"top-k"`` (fake tensors on ``meta``: the
            router's k from the routing tensor's shape) or ``"config"`` (no forward: the router's
            ``top_k`` / the config's ``num_experts_per_tok``).
        adapters: for a PEFT model, one :class:`AdapterGroup` per named adapter; the base model
            is everything else (``total_params - sum(a.params for a in adapters)``).
        quantized_params / quantized_bytes / quant_state_bytes: the model's quantized weights
            (see :mod:`netsummary._analysis.quantized`; 0 for a model without any): their logical
            elements, the elements of the float model (part of ``total_params``, and of
            ``non_trainable_params`` when frozen), their stored bytes, packed, at their real
            dtype (part of ``param_bytes``), and the bytes of their quantization state (scales,
            zero points, absmax: in neither, but in ``estimated_total_bytes``).
        quant_unknown: ``"name (Type)"`` of each quantized layer whose layout netsummary does not
            know: its stored bytes are in ``param_bytes``, its logical elements in no count, so
            ``total_params`` is then a lower bound.
        quant_dtypes: how the quantized weights are stored (``("int4 packed", "int8")``).
        local_params / local_trainable_params / local_param_bytes: for a model with sharded
            parameters (DTensors of FSDP2 ``fully_shard``, tensor parallelism or
            ``distribute_tensor``; DeepSpeed ZeRO-3 partitions), the elements, trainable
            elements and bytes this rank holds: a DTensor's ``to_local()``, a ZeRO-3
            parameter's ``ds_tensor``; unsharded parameters count whole. ``None`` when no
            parameter is sharded. ``total_params`` / ``param_bytes`` stay the global (logical)
            figures, the same on every rank and read without any collective.
        rank / world_size: this process's rank and the job's size (``torch.distributed``) when
            the model is sharded and a process group is initialized, else ``None``.
        mesh_shapes: the shapes of the device meshes the DTensor parameters live on (``((2,),)``).
        ranks: with ``summary(..., all_ranks=True)``, every rank's local figures
            (:class:`RankShare`, in rank order), gathered with a collective; else ``()``.
        local_buffer_count / local_buffer_bytes: when some buffer is a DTensor, the buffer
            elements and bytes this rank holds (a DTensor buffer's ``to_local()``, every other
            buffer whole); ``buffer_count`` / ``buffer_bytes`` stay global. Such a model is
            :attr:`sharded` (its ``local_params`` count unsharded parameters whole). ``None``
            when no buffer is a DTensor.
        memory: the measured memory of one training step or inference forward
            (:class:`~netsummary._memory.estimate.MemoryEstimate`) when ``summary()`` was given
            ``estimate=``; else ``None``.
    """

    model_type: str
    layers: tuple[LayerRecord, ...]
    other_params: tuple[ParamGroup, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    param_bytes: int
    buffer_count: int
    buffer_bytes: int
    input_bytes: int
    output_bytes: int
    input_shapes: ShapeTree
    input_dtypes: tuple[str, ...]
    batch_size: int
    run_batch_size: int | None
    device: str
    mode: str
    complete: bool = True
    uninitialized: tuple[str, ...] = field(default_factory=tuple)
    total_macs: int | None = None
    unknown_ops: tuple[str, ...] = ()
    input_batch_axes: tuple[int | None, ...] = ()
    forward_ran: bool = True
    local_params: int | None = None
    local_trainable_params: int | None = None
    local_param_bytes: int | None = None
    rank: int | None = None
    world_size: int | None = None
    mesh_shapes: tuple[tuple[int, ...], ...] = ()
    ranks: tuple[RankShare, ...] = ()
    memory: MemoryEstimate | None = None
    local_buffer_count: int | None = None
    local_buffer_bytes: int | None = None
    _printed: bool = field(default=False, compare=False, repr=False)  # summary() printed it
    # mixture of experts (see netsummary._analysis.experts); None for a model without routed experts
    expert_params: int | None = None
    active_params: int | None = None
    active_params_method: str | None = None
    # PEFT adapters, by name (see netsummary._analysis.adapters); () for a model without adapters
    adapters: tuple[AdapterGroup, ...] = ()
    quantized_params: int = 0
    quantized_bytes: int = 0
    quant_state_bytes: int = 0
    quant_unknown: tuple[str, ...] = ()
    quant_dtypes: tuple[str, ...] = ()

    @property
    def quantized(self) -> bool:
        """The model holds quantized weights (known or unknown layouts)."""
        return bool(self.quantized_bytes or self.quant_unknown)

    @property
    def sharded(self) -> bool:
        """Some parameter (DTensor, ZeRO-3) or buffer (DTensor) is sharded: the ``local_*`` figures are set."""
        return self.local_params is not None

    @property
    def leaf_layers(self) -> tuple[LayerRecord, ...]:
        """The leaf calls: the rows of the classic torchsummary table."""
        return tuple(r for r in self.layers if r.is_leaf)

    @property
    def shared_params(self) -> int:
        """Parameter elements shown in more than one leaf row but counted once in the totals
        (modules created during the forward, outside the totals, left out)."""
        return sum(r.shared_params for r in self.layers if r.is_leaf and not r.created)

    @property
    def estimated_total_bytes(self) -> int:
        """``input_bytes + 2 * output_bytes + param_bytes``: torchsummary's "Estimated Total Size"
        (plus ``quant_state_bytes`` for a quantized model: its scales are memory it holds too)."""
        return self.input_bytes + 2 * self.output_bytes + self.param_bytes + self.quant_state_bytes

    def __str__(self) -> str:
        return render_classic(self)

    def render(self, format: str | None = None, *, depth: int | None = None, columns: Sequence[str] | None = None,
               fold: bool = True) -> str:
        """The summary as text in ``format``: ``"classic"`` (default), ``"tree"``, ``"markdown"``,
        ``"html"``, ``"json"``, ``"csv"`` or ``"memory"`` (the memory section of a summary made
        with ``estimate=``); ``depth`` / ``columns`` shape the tree formats
        (passing either alone means ``"tree"``). In the tree formats a run of identical sibling
        blocks is one row (``layers.0–79 (Block) × 80``) unless ``fold=False``; JSON, CSV and
        the classic table always hold every layer.

        Raises:
            InputSpecError: unknown format or column, or a depth that is not an int >= 0.
            InputTypeError: ``fold`` is not a bool.
        """
        from ._reporting.formats import render

        return render(self, format, depth, columns, fold)

    def to_dict(self) -> dict:
        """Plain data in base units (JSON schema in :mod:`netsummary._reporting.export`); round-trips
        through :meth:`from_dict`."""
        from ._reporting.export import to_dict

        return to_dict(self)

    def to_json(self) -> str:
        """Deterministic JSON of :meth:`to_dict`."""
        from ._reporting.export import to_json

        return to_json(self)

    @staticmethod
    def from_dict(data: dict) -> Summary:
        """Rebuild a summary from :meth:`to_dict`'s output or loaded JSON, checking every field
        (see :func:`netsummary._reporting.load.from_dict`); control characters in names are escaped.

        Raises:
            InputSpecError: not a netsummary summary; the message names the field, what it holds
                and what was expected (``total_params is True (bool), expected an int``).
        """
        from ._reporting.load import from_dict

        return from_dict(data)

    @staticmethod
    def from_json(text: str) -> Summary:
        """Rebuild a summary from :meth:`to_json`'s text, checked as :meth:`from_dict` checks it.

        Raises:
            InputSpecError: not JSON, over 64 MiB, or not a netsummary summary.
        """
        from ._reporting.load import from_json

        return from_json(text)

    def _repr_html_(self) -> str | None:
        """Notebook display: the HTML tree table, unless ``summary()`` already printed it (so a
        notebook shows the table once, not twice)."""
        return None if self._printed else self.render("html")

    def __repr__(self) -> str:
        rows = len(self.leaf_layers)
        state = ("" if self.complete else ", partial") + ("" if self.forward_ran else ", no forward")
        return f"<Summary of {self.model_type}: {self.total_params:,} params, {rows} leaf rows{state}>"


@dataclass(frozen=True, slots=True)
class ParamShard:
    """How one parameter is sharded: its global (logical) shape and the shard this rank holds.

    Attributes:
        name: the parameter's name in its module (``"weight"``).
        shape: the global (logical) shape, as the unsharded model has it (``(32, 16)``).
        local_shape: the shape of this rank's shard (``(16, 16)`` for ``Shard(0)`` over 2 ranks).
        placements: one per mesh dimension, as their constructors read (``("Shard(0)",)``,
            ``("Replicate()",)``); ``("ZeRO-3",)`` for a DeepSpeed partition.
        mesh_shape: the device mesh's shape (``(2,)``); ``()`` for a ZeRO-3 partition.
    """

    name: str
    shape: tuple[int, ...]
    local_shape: tuple[int, ...]
    placements: tuple[str, ...]
    mesh_shape: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class RankShare:
    """One rank's share of a sharded model's parameters (``summary(..., all_ranks=True)``).

    Attributes:
        rank: the rank in the default process group.
        local_params / local_trainable_params / local_param_bytes: elements, trainable elements
            and bytes of the parameters this rank holds (see :attr:`Summary.local_params`).
    """

    rank: int
    local_params: int
    local_trainable_params: int
    local_param_bytes: int
