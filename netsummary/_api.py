"""``summary()``: inputs -> trace (hooks, one forward) -> records -> counts -> Summary -> render."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ._tracing.batch import BatchAxes
from ._errors import InputSpecError, InputTypeError
from ._reporting.failure import failed_inputs, forward_error
from ._reporting.formats import render, resolve_format
from ._tracing.distributed import (check_all_ranks, check_process_groups, collective_on_every_path, fsdp_free_view,
                                   gather_ranks, has_fsdp)
from ._tracing.guard import ModelGuard
from ._tracing.forward import probe_batch_axes, run_forward
from ._tracing.interrupts import deferred_interrupts
from ._tracing.device import check_meta_form, resolve_device
from ._tracing.inputs import ForwardInputs, build_inputs, check_batch_size, check_mode, make_inputs
from ._tracing.model import check_forward_kwargs, eager_module, has_lazy, shape_only_copy, walk_modules
from ._analysis.records import build_structure_summary, build_summary
from ._analysis import experts as _experts
from ._analysis.extras import find_adapters, with_extras
from ._analysis.quant_hints import quantized_hint
from ._summary import Summary
from ._tracing.pure import pure_forward, pure_leaves
from ._tracing.switches import GC_PAUSED, mha_fast_path_off
from ._tracing.trace import Tracer


@collective_on_every_path  # all_ranks=True: every way out takes part in the one collective
def summary(
    model: nn.Module,
    input_size: Any = None,
    batch_size: int = -1,
    device: str | torch.device | None = None,
    dtypes: Any = None,
    *,
    input_data: Any = None,
    mode: str = "eval",
    verbose: int = 1,
    print_fn: Callable[[str], Any] | None = print,
    format: str | None = None,
    depth: int | None = None,
    columns: Sequence[str] | None = None,
    macs: bool | None = None,
    formulas: bool | None = None,
    fold: bool = True,
    all_ranks: bool = False,
    estimate: str | None = None,
    optimizer: Any = "adamw",
    autocast: torch.dtype | None = None,
    fits: Any = None,
    context: int | None = None,
    world_size: int | None = None,
    strategy: str | None = None,
    **kwargs: Any,
) -> Summary:
    """Summarize ``model``: per-call output shapes and parameters, exact totals, bytes.

    A drop-in for ``torchsummary.summary``: it runs one forward pass on a dummy batch, prints the
    classic table and returns it as data. Without any input (no ``input_size``, ``input_data``
    or forward keyword arguments), or for a model whose class defines no ``forward``
    (``nn.ModuleList``, ``nn.ModuleDict``, ``nn.ParameterList``, a module holding only
    parameters), nothing is run: the summary holds the module tree and its parameters, with
    ``forward_ran=False``, and the tables show shapes, MACs and activation sizes as ``--``.

    >>> from torch import nn
    >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    >>> s = summary(m, (3, 8, 8), verbose=0)
    >>> s.total_params                # 8*(3*3*3) + 8 = 224;  288*10 + 10 = 2,890
    3114
    >>> s.layers[1].name, s.layers[1].output_shapes, s.layers[1].params
    ('0', (2, 8, 6, 6), 224)
    >>> s.param_bytes                 # 3,114 float32 elements * 4 bytes
    12456

    Args:
        model: any ``nn.Module``; its state is left as it was, even on error or Ctrl-C:
            parameter and buffer values, training flags, ``requires_grad``, ``.grad``, devices,
            the grad mode and the generators its forward drew from. Hooks and attributes the
            model's own forward installs stay, as after any real forward; netsummary's own hooks
            are removed (see :mod:`netsummary._tracing.guard`). Safe to call from several threads.
        input_size: one sample's shape without the batch dimension, ``(3, 64, 64)``, or a list
            of such tuples for several positional inputs. Neither it nor ``input_data``: a
            parameter-only summary (see above).
        batch_size: ``-1`` (default) runs 2 samples and shows the batch as ``-1`` with byte
            and MAC figures for one sample (when some tensor has another axis of size 2, a
            second forward with 3 samples tells which axis is the batch); a positive value runs
            and shows that many.
        device: ``None`` follows the model's parameters (CPU if it has none); ``"cpu"``,
            ``"cuda"``, ``"cuda:1"``, a ``torch.device``, or ``"meta"`` (shapes only, no memory).
        dtypes: one ``torch.dtype`` per input (default: the model's floating dtype, else
            float32). Integer inputs get valid token ids for the model's embeddings.
        input_data: real example inputs instead of ``input_size``: a tensor, a list/tuple
            (positional arguments) or a dict (keyword arguments); non-tensors pass through.
        mode: ``"eval"`` (default; ``model.eval()`` under ``torch.no_grad()``), ``"train"`` or
            ``"same"`` (keep each module's flag).
        verbose: 0 prints nothing; 1 (default) prints the table (in a ``torch.distributed``
            run, on rank 0 only; every rank gets the returned summary).
        print_fn: where the table goes (``print``; ``logger.info``), called once with the whole
            table; ``None`` prints nothing.
        format: what is printed: ``"classic"`` (default), ``"tree"``, ``"markdown"``,
            ``"html"``, ``"json"`` or ``"csv"``; passing ``depth`` or ``columns`` alone means
            ``"tree"``. The returned summary renders any of them later (:meth:`Summary.render`).
        depth: the tree view's depth (0 = the root only; ``None`` = every level).
        columns: the tree view's columns, from ``input_shape``, ``output_shape``, ``params``,
            ``params_percent``, ``kernel_shape``, ``trainable``, ``macs``, ``output_bytes``,
            ``formula``, ``param_bytes``, ``local_params``, ``shard`` (default: output_shape, params,
            macs; without a forward: params, trainable, param_bytes; a sharded model adds
            local_params and shard after params).
        macs: count multiply-accumulates per operator during the forward. ``None`` (default)
            counts them when the printed format shows them (every format but ``"classic"``);
            ``True`` always. Counting runs a dispatch mode over every operator: the first time
            in a process torch imports its compiler stack (about 1.5 s), then it costs about as
            much again as the summary's hooks on tiny layers and little on real ones. Without
            it ``total_macs`` and every ``LayerRecord.macs`` are ``None``.
        formulas: record how each leaf's parameter count arises (``LayerRecord.formula``);
            default: only when the ``formula`` column is printed.
        fold: in the tree formats, show a run of identical consecutive sibling blocks as one
            row, ``layers.0–79 (LlamaDecoderLayer) × 80``, figures as ``80 × per block = total``,
            the first block's rows under it (see :mod:`netsummary._reporting.fold`); ``False`` shows every
            block. JSON, CSV and the classic table are never folded.
        all_ranks: in a ``torch.distributed`` job, gather every rank's local parameter figures
            (:attr:`Summary.ranks`) into the summary of every rank, and print them as one
            per-rank table on rank 0. This is a **collective**
            (``torch.distributed.all_gather_object`` on the default group): every rank must call
            ``summary(..., all_ranks=True)``, as with any collective. Every way out of the call
            takes part in it exactly once, so no rank is left waiting on one that raised: a rank
            whose call fails (a bad argument, device or forward, ...) contributes its error and
            raises it (a :class:`ForwardError`'s ``partial`` gets every rank's figures); the
            ranks that succeeded raise :class:`RankError` ("rank 1 of 2 failed: InputTypeError:
            ..."), their complete summary on ``.partial``. A collective that fails (a rank
            exited) is a :class:`RankError` naming it; a rank that never calls ``summary``
            leaves the others waiting until the process group's timeout
            (``init_process_group(timeout=...)``, 30 minutes by default).
            Without it nothing is communicated: the global totals are read from each tensor's
            metadata, the same on every rank.
        estimate: ``None`` (default: nothing more runs, the output is unchanged), ``"train"`` or
            ``"inference"``: measure the memory of one training step (forward, backward,
            ``optimizer.step()``) or one forward under ``torch.no_grad()`` by running it once on
            stand-ins of the model's tensors (see :mod:`netsummary._memory.step`): real clones on
            the model's device (the run needs one more copy of the weights), fake tensors for a
            model on ``"meta"`` or with ``device="meta"`` (no memory at all). The result is ``Summary.memory``, a
            :class:`~netsummary._memory.estimate.MemoryEstimate` in bytes per category
            (parameters, buffers, inputs, gradients, optimizer state, saved activations, the
            peak with its phase, module and operator), each with its method (``"counted"``,
            ``"measured on real tensors"``, ``"measured on fake tensors"``, ``"formula"``); the
            printed table is followed by the memory section (also ``format="memory"``,
            ``s.render("memory")``), the tree view gets the ``activations`` column (saved
            bytes per call, innermost attribution) and JSON a ``memory`` object. The batch is
            ``batch_size`` (1 with ``batch_size=-1``, which the section notes); the training
            step is a steady-state one (optimizer state live from the start, gradients
            ``None``, loss = the sum of the output's floating tensors). Overheads the step
            cannot see (CUDA context, allocator rounding, fragmentation, kernel workspaces) are
            named in ``notes``; a peak that misses a kernel's workspace (fused RNNs) says it is
            a lower bound.
        optimizer: for ``estimate="train"``: ``"sgd"``, ``"sgd-momentum"``, ``"adam"``,
            ``"adamw"`` (default), ``"adagrad"``, ``"rmsprop"``, a ``torch.optim.Optimizer``
            subclass, or an instance (its class and param groups' settings are used on the
            stand-ins; its own state is never touched). The state counted is what that
            optimizer allocates in a real (or fake) ``step()``, ``foreach`` copies included.
        autocast: ``None`` or a floating dtype (``torch.bfloat16``): the measured forward runs
            under ``torch.autocast`` on the model's device type; the weight copies autocast
            keeps for the backward are counted.
        fits: with ``estimate=``, hold the measured peak to a size (``"24GiB"``: GiB = 2**30 bytes;
            ``"80GB"``: GB = 10**9 bytes; an int of bytes) or a CUDA device (``"cuda:0"``: its free
            memory, ``torch.cuda.mem_get_info``): yes/no, the headroom or shortfall, the named
            overheads the estimate cannot see, the largest batch that fits (the step measured at
            a second batch) and, for transformers decoders, the largest context
            (:mod:`netsummary._memory.verdict`). ``"cpu"`` is refused: give its size.
        context: tokens per sequence for a transformers decoder's KV cache and verdict
            (:mod:`netsummary._memory.kvcache`); default: the measured sequence length.
        world_size / strategy: per-rank figures of data-parallel training on ``world_size``
            ranks with ``strategy`` ``"ddp"`` (default), ``"zero2"`` or ``"fsdp"`` (ZeRO-3), the
            batch split across ranks (:mod:`netsummary._memory.sharding`). The results are on
            ``s.memory.plan`` (:class:`~netsummary._memory.plan.MemoryPlan`) and printed after
            the memory section. Without ``estimate``, a ``forward`` that names one of these four
            as a parameter (``forward(x, context=None)``) receives it, as before; with
            ``estimate``, pass such a forward argument in ``input_data`` (a dict).
        **kwargs: passed to ``model.forward`` as keyword arguments.

    Returns:
        A :class:`Summary`. The classic table's size lines are, in MB = MiB = 2**20 bytes:
        *Input size* = ``input_bytes`` (one sample when ``batch_size=-1``);
        *Forward/backward pass size* = 2 × ``output_bytes`` (every leaf call's output, kept for
        the backward pass); *Params size* = ``param_bytes`` (unique parameters at their dtypes);
        *Estimated Total Size* = the sum of the three.
        A mixture-of-experts model also gets ``expert_params``, ``active_params`` (parameters
        used per token) and ``active_params_method``; a PEFT model ``adapters`` (parameters by
        adapter name); the tables show them under the totals (see :class:`Summary`).

    Raises:
        InputSpecError: invalid ``input_size``, ``dtypes``, ``batch_size``, ``input_data`` or
            ``mode``, ``columns=["macs", ...]`` with ``macs=False``, ``all_ranks=True`` outside an
            initialized ``torch.distributed`` job, a module graph with a cycle, a PEFT model
            without adapters, a ``fits`` that is neither a size nor a CUDA device, ``context`` on a
            model that is not a transformers decoder, a world size below 1, an unknown strategy,
            any of these without ``estimate`` (:class:`InputTypeError` for a wrong Python type);
            raised before any forward.
        DeviceError: unknown device, CUDA unavailable, or the model lives on another device; a
            forward over DTensor parameters whose process group is not initialized (or destroyed).
        ForwardError: the model's forward raised; chained to that exception, it names the module
            that failed and the inputs it received, and carries the partial summary.
        RankError: ``all_ranks=True`` and another rank's call failed (its error text in
            ``.failed``, this rank's summary in ``.partial``), or the collective itself failed.
        MemoryEstimateError: the measured step of ``estimate=`` failed (``.phase`` forward,
            backward or optimizer; ``.module_name``; ``.op``; ``.partial`` holds what was measured,
            the forward's figures for a failed backward); on fake tensors, code that reads tensor
            values gets a message saying so that suggests a real run on ``"cpu"``. An unknown
            ``estimate``, ``optimizer`` or ``autocast``, or ``estimate`` without an input or for
            a model without a forward, is an :class:`InputSpecError` / :class:`InputTypeError`
            raised before any forward.
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}", model)
    if print_fn is not None and not callable(print_fn):
        raise InputTypeError(f"print_fn: expected a callable such as print or logger.info, got {print_fn!r}", print_fn)
    if not isinstance(verbose, int):
        raise InputTypeError(f"verbose: expected 0 (silent) or 1 (print the table), got {verbose!r}", verbose)
    for name, flag in (("macs", macs), ("formulas", formulas)):
        if flag is not None and not isinstance(flag, bool):
            raise InputTypeError(f"{name}: expected True, False or None (automatic), got {flag!r}", flag)
    mode = check_mode(mode)
    all_ranks = check_all_ranks(all_ranks)
    shown_format = resolve_format(format, depth, columns)
    memory_args = _check_estimate(estimate, optimizer, autocast, shown_format, columns)
    if estimate is None:  # a forward that names one of these keywords gets it, as before they existed
        fits, context, world_size, strategy = _forward_keywords(model, kwargs, fits=fits, context=context,
                                                                world_size=world_size, strategy=strategy)
    plan_args = _check_plan(model, estimate, fits, context, world_size, strategy)
    if formulas is None:
        formulas = columns is not None and "formula" in columns
    if macs is None:
        macs = shown_format != "classic"
    elif not macs and columns is not None and "macs" in columns:  # printed or not: before any forward
        raise InputSpecError(
            f"columns: 'macs' needs MACs counted, but macs=False was given; pass macs=True or drop the column "
            f"(columns={list(columns)!r})", columns)
    model = eager_module(model)
    named = walk_modules(model)  # the one traversal every later step shares (cycles refused)
    dev = resolve_device(named, device)
    given = input_size is not None or input_data is not None or bool(kwargs)
    adapters = find_adapters(model, named)  # PEFT: by adapter name (a model without adapters is refused here)
    if not given or _defines_no_forward(model):  # parameters only: nothing is run
        if given:  # a wrong input is an error even where it would not be used
            build_inputs(model, dev, input_size, input_data, dtypes, batch_size, kwargs)
        elif dtypes is not None:
            raise InputSpecError("dtypes applies to input_size, and no input was given", dtypes)
        if estimate is not None:
            why = "no input was given (pass input_size or input_data)" if not given else (
                f"{type(model).__name__} defines no forward")
            raise InputSpecError(f"estimate={estimate!r} measures one forward of the model, but {why}", estimate)
        result = build_structure_summary(model, named, dev, mode, check_batch_size(batch_size), formulas)
        result = with_extras(result, adapters, _experts.find_experts(named), None)
        if all_ranks:
            result = gather_ranks(result)
        if verbose and print_fn is not None and _is_rank_zero():
            print_fn(_shown(result, shown_format, depth, columns, fold))
            object.__setattr__(result, "_printed", True)
        return result
    lazy = has_lazy(named)
    if lazy:  # materialize on a shape-only copy; the user's model stays lazy
        model = shape_only_copy(model)
        named = list(model.named_modules())
        dev = torch.device("meta")
    if dev.type != "meta":
        check_process_groups(named)  # before any forward: the collectives need live groups
    elif not lazy:
        check_meta_form(named)  # a quantized tensor has no meta stand-in
        if has_fsdp(named):  # FSDP2 cannot all-gather meta parameters: a view without it
            model = fsdp_free_view(model)
            named = walk_modules(model)
    groups = _experts.find_experts(named)  # routed experts (MoE): one pass over the modules
    stand_in = any(g.kind == "fused" for g in groups)  # grouped matmuls on fake tensors, see experts.py
    inputs = build_inputs(model, dev, input_size, input_data, dtypes, batch_size, kwargs)
    check_forward_kwargs(model, inputs.kwargs, given_by_name=isinstance(input_data, dict))

    shown_batch = inputs.run_batch if inputs.batch_size == -1 else None  # figures per sample
    # the forward of a meta model runs on fake stand-ins (or on a lazy model's copy): the user's
    # tensors cannot be written, and fake kernels draw no random numbers
    # a forward of torch's own stateless layers only needs neither the write watch nor the MAC
    # counter's dispatch mode: MACs then come from each call's shapes (see _tracing/pure.py)
    since_id, verdicts = RemovableHandle.next_id, {}  # a hook registered after this is seen by the tracer
    pure = not lazy and pure_forward(named, (inputs.args, inputs.kwargs), input_data is None and not kwargs, dev,
                                     mode, verdicts)
    guard = ModelGuard(model, [m for _, m in named], watch_writes=dev.type != "meta", pure=pure)
    # otherwise the dispatch mode is paused inside the leaves that are known-pure by themselves
    pausable = frozenset() if pure or lazy else pure_leaves(named, dev, mode)
    tracer = Tracer(model, named, count_macs=bool(macs), guard=guard, shape_macs=pure, pausable=pausable,
                    pure_since=(since_id, verdicts) if pure else None)
    axes = BatchAxes(shown_batch)  # the probe below refines it after a successful forward
    error: Exception | None = None
    # Ctrl-C interrupts the model's forward only, never the restore (held, then delivered)
    with deferred_interrupts(), GC_PAUSED.held(), guard:
        if mode != "same":
            _set_training(model, named, mode == "train")
        grad = torch.no_grad() if mode == "eval" else contextlib.nullcontext()
        try:
            with grad, mha_fast_path_off(m for _, m in named), tracer, _experts.RoutingProbe(groups):
                # a lazy copy materializes its own meta tensors: plain meta, not fake stand-ins
                run_forward(model, inputs, fake=dev.type == "meta" and not lazy, stand_in=stand_in)
        except Exception as err:  # the user's model failed: report it, never swallow it
            error = err
            failed = tracer.failing_call()
            received = failed_inputs(failed, err) if failed is not None else None
        else:
            if shown_batch is not None:
                with grad, mha_fast_path_off(m for _, m in named):
                    axes = probe_batch_axes(model, named, inputs, tracer, dev, stand_in)
        # the guard restores the model before anything else happens

    with GC_PAUSED.held():
        result = build_summary(model, named, tracer, inputs, dev, mode, error is None, bool(macs), formulas, axes)
        result = with_extras(result, adapters, groups, tracer.calls)
    if error is not None:  # with all_ranks, the ForwardError takes part in the collective on its way out
        shown = "tree" if shown_format in ("json", "csv") else shown_format  # a report is for reading
        hint = _experts.routing_hint(error, groups, failed.module if failed is not None else None) if dev.type == "meta" else None
        qhint = quantized_hint(error, failed.module if failed is not None else None, named, dev.type)
        raise forward_error(error, failed, received, result, lambda p: render(p, shown, depth, columns, fold), lazy=lazy,
                            hint=hint, quant_hint=qhint) from error
    if estimate is not None:
        result = _with_memory(result, model, named, dev, inputs, memory_args, plan_args)
    if all_ranks:  # the last step before printing: every error above takes part in the collective instead
        result = gather_ranks(result)
    if verbose and print_fn is not None and _is_rank_zero():
        print_fn(_shown(result, shown_format, depth, columns, fold))
        object.__setattr__(result, "_printed", True)
    return result


def _check_estimate(estimate: Any, optimizer: Any, autocast: Any, shown_format: str,
                    columns: Sequence[str] | None) -> tuple[str, Any, Any] | None:
    """Validate ``estimate``, ``optimizer`` and ``autocast`` before any forward runs."""
    from ._memory.optimizers import resolve_optimizer
    from ._memory.options import check_autocast, check_kind

    kind = check_kind(estimate)
    if kind == "train":
        resolve_optimizer(optimizer)
    autocast = check_autocast(autocast)
    if kind is None:
        if shown_format == "memory":
            raise InputSpecError("format='memory' shows the memory estimate: pass estimate='train' or 'inference'",
                                 shown_format)
        if columns is not None and "activations" in columns:
            raise InputSpecError("columns: 'activations' needs a measured step: pass estimate='train'", columns)
        return None
    return kind, optimizer, autocast


def _forward_keywords(model: nn.Module, kwargs: dict[str, Any], **given: Any) -> tuple:
    """Without ``estimate``, hand each of ``given`` that the model's ``forward`` names as a
    parameter (``forward(x, context=None)``) to the forward, as any unknown keyword is; return the
    values left for the memory plan (``None`` where handed on)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}
    out = []
    for name, value in given.items():
        named = name in params and params[name].kind not in (inspect.Parameter.VAR_KEYWORD,
                                                               inspect.Parameter.VAR_POSITIONAL)
        if value is not None and named:
            kwargs[name] = value
            value = None
        out.append(value)
    return tuple(out)


def _check_plan(model: nn.Module, estimate: Any, fits: Any, context: Any, world_size: Any, strategy: Any) -> Any:
    """Validate ``fits``, ``context``, ``world_size`` and ``strategy`` before any forward runs
    (:func:`netsummary._memory.plan.check_plan`); ``None`` when none is given."""
    if fits is None and context is None and world_size is None and strategy is None:
        return None
    from ._memory.plan import check_plan

    return check_plan(model, estimate, fits, context, world_size, strategy)


def _with_memory(result: Summary, model: nn.Module, named: list, dev: torch.device, inputs: ForwardInputs,
                 memory_args: tuple[str, Any, Any], plan_args: Any = None) -> Summary:
    """``result`` with the measured memory of one step (see :mod:`netsummary._memory.step`)."""
    import dataclasses

    from ._memory.step import measure

    kind, optimizer, autocast = memory_args
    notes: tuple[str, ...] = ()
    if inputs.batch_size == -1 and inputs.run_batch is not None:  # one sample shown: measure a batch of 1
        args, _ = make_inputs(model, list(inputs.sizes), list(inputs.dtypes), 1, dev)
        inputs = ForwardInputs(args, inputs.kwargs, 1, 1, inputs.sizes, inputs.dtypes)
        notes = ("batch_size=-1: measured with a batch of 1; pass batch_size= for the batch you train with",)
    est = measure(model, named, inputs, dev, kind, optimizer, autocast)
    if notes:
        est = dataclasses.replace(est, notes=notes + est.notes)
    if plan_args is not None:  # fits= / context= / world_size=: the same step measured at other batches
        from ._memory.plan import forward_tokens, inputs_at, plan_memory

        def remeasure(b: int) -> Any:
            return measure(model, named, inputs_at(model, inputs, est.batch_size, b, dev), dev, kind, optimizer, autocast)

        est = dataclasses.replace(est, plan=plan_memory(model, est, remeasure, plan_args, forward_tokens(model, inputs)))
    return dataclasses.replace(result, memory=est)


def _shown(result: Summary, shown_format: str, depth: int | None, columns: Any, fold: bool) -> str:
    """What ``summary()`` prints: the format asked for, and the memory section after the classic
    table or the tree view when an estimate was made."""
    text = render(result, shown_format, depth, columns, fold)
    if result.memory is not None and shown_format in ("classic", "tree"):
        text += "\n\n" + render(result, "memory")
    return text


def _defines_no_forward(model: nn.Module) -> bool:
    """The model's class keeps ``nn.Module``'s ``forward``, which raises NotImplementedError
    (``nn.ModuleList``, ``nn.ModuleDict``, ``nn.ParameterList``, a holder of parameters). Looked up
    in the class dicts: a TorchScript class's ``forward`` descriptor cannot be read off the class."""
    for cls in type(model).__mro__:
        if "forward" in cls.__dict__:
            return cls.__dict__["forward"] is nn.Module.forward
    return True


def _is_rank_zero() -> bool:
    """False on the non-zero ranks of an initialized ``torch.distributed`` run: the table is
    printed once per job, while every rank still gets the returned summary."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)


def _set_training(model: nn.Module, named: list[tuple[str, nn.Module]], flag: bool) -> None:
    """``model.train(flag)``; set directly when no module overrides ``train()`` (much faster), and
    nothing at all when every module is already in that mode (a model's own ``train()``, such as
    transformers', is not called to change nothing)."""
    if all(m.training is flag for _, m in named):
        return
    if any(type(m).train is not nn.Module.train or isinstance(m, torch.jit.ScriptModule) for _, m in named):
        model.train(flag)
    else:
        for _, m in named:
            object.__setattr__(m, "training", flag)
