"""The command line: summarize a model, hold it to budgets, compare with a baseline, inspect checkpoints.

``main(argv) -> int`` is the only function that prints. Exit codes: 0 done (within every
budget), 1 over a budget or past the allowed growth, 2 a usage or input error (one line on stderr,
no traceback; also user code calling ``sys.exit()`` while the model is loaded or built, and any
unexpected error: set ``NETSUMMARY_DEBUG=1`` for its traceback), 3 the model's forward failed
(netsummary's failure report on stderr; also a forward that calls ``sys.exit()``), 130 interrupted
(Ctrl-C: one line ``netsummary: interrupted`` on stderr, no traceback). Only a budget or growth
verdict exits 1.

Importing this module does not import torch, and neither does ``netsummary inspect`` of a
safetensors file or a sharded safetensors index: the modules that need torch (the model loader,
the config's dtypes, saved summaries) are imported by the commands that use them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .budget import Check, evaluate, evaluate_checkpoint, parse_limits
from .parsers import _UsageError, _check_parser, _diff_parser, _inspect_parser, _summary_parser
from .._errors import ForwardError, InputSpecError, NetsummaryError
from .._safeio import escape, file_name_problem
from .._units import parse_percent

if TYPE_CHECKING:
    from .config import ModelSpec
    from .._reporting.diff import Growth
    from .._summary import Summary

OK, OVER, USAGE, FORWARD_FAILED = 0, 1, 2, 3
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command that Ctrl-C ended
COMMANDS = ("check", "diff", "inspect")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: the user knows why; a traceback of netsummary's internals helps no one
        with contextlib.suppress(Exception):
            print("netsummary: interrupted", file=sys.stderr)
        return INTERRUPTED


def _values_joined(argv: list[str]) -> list[str]:
    """``--max-growth -2%`` as ``--max-growth=-2%``: argparse takes a value that starts with
    ``-`` (and is not a plain number) for an option and says "expected one argument"; joined,
    the value reaches its own check, which says what is wrong with it."""
    out: list[str] = []
    for a in argv:
        if out and out[-1] == "--max-growth" and a[:1] == "-" and a[1:2].isdigit():
            out[-1] = f"--max-growth={a}"
        else:
            out.append(a)
    return out


def _main(argv: Sequence[str] | None) -> int:
    argv = _values_joined(list(sys.argv[1:] if argv is None else argv))
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = {"check": _check_parser, "diff": _diff_parser, "inspect": _inspect_parser}.get(command, _summary_parser)()
    try:
        args = parser.parse_args(argv[1:] if command else argv)
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else OK
    except _UsageError as err:
        print(f"netsummary: error: {escape(str(err))}", file=sys.stderr)
        return USAGE
    try:
        return {"check": _check, "diff": _diff, "inspect": _inspect}.get(command, _summary)(args)
    except _UsageError as err:
        print(f"netsummary: error: {escape(str(err))}", file=sys.stderr)
        return USAGE
    except ForwardError as err:
        print(f"netsummary: error: {err}", file=sys.stderr)
        return FORWARD_FAILED
    except (NetsummaryError, OSError) as err:  # invalid input, target, config, device, checkpoint, file
        print(f"netsummary: error: {escape(str(err))}", file=sys.stderr)  # one line, whatever names it holds
        return USAGE
    except Exception as err:  # a bug or a case nobody foresaw: still one line, and never exit 1
        if os.environ.get("NETSUMMARY_DEBUG", "") not in ("", "0"):
            traceback.print_exception(err, file=sys.stderr)
        print(f"netsummary: error: {_unexpected(err)} (set NETSUMMARY_DEBUG=1 for the traceback)", file=sys.stderr)
        return USAGE


def _unexpected(err: BaseException) -> str:
    """``"unexpected OverflowError: Python int too large to convert to C long"``, on one line."""
    return escape(f"unexpected {type(err).__name__}: {' '.join(str(err).split()) or '(no message)'}")


def _emit(text: str, path: str | None, stream: Any = None, what: str = "--output") -> None:
    """Write ``text`` to ``path``, or print it (to ``stream``, default stdout).

    Raises:
        InputSpecError: ``path`` cannot be written (the message starts with ``what``).
    """
    text = text if text.endswith("\n") else text + "\n"
    if path is None:
        print(text, end="", file=stream or sys.stdout)
        return
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as err:
        raise InputSpecError(f"{what} {path}: cannot write it ({err.strerror or err})", path) from None


def _summary(args: argparse.Namespace) -> int:
    from .config import build_spec
    from .._reporting.diff import load_summary
    from .target import split_target

    _, name = split_target(args.target)
    table: dict[str, Any] = {"target": args.target}
    for key in ("input_size", "dtypes", "batch_size", "device", "mode", "baseline", "max_growth",
                "max_params", "max_trainable_params", "max_macs", "max_param_bytes", "max_total_bytes",
                "max_train_memory", "max_inference_memory", "estimate", "optimizer", "autocast", "fits", "context",
                "world_size", "strategy"):
        if getattr(args, key) is not None:
            table[key.replace("_", "-")] = getattr(args, key)
    if args.kwargs is not None:
        table["kwargs"] = _json_object(args.kwargs)
    spec = build_spec(name, table, lambda k: "TARGET" if k == "target" else f"--{k}", error=InputSpecError)
    if args.input_size is None:  # a parameter-only summary: nothing is run, so nothing is measured on a forward
        _refuse_forward_budgets(spec, "no --input-size was given (e.g. --input-size 3,64,64: one sample's shape "
                                "without the batch)")
    if spec.max_growth is not None and spec.baseline is None:
        raise _UsageError("--max-growth needs --baseline FILE (a summary saved with --format json)")
    columns = None if args.columns is None else [c.strip() for c in args.columns.split(",")]
    base = None if spec.baseline is None else load_summary(spec.baseline)  # a missing file fails first
    # keep JSON/CSV on stdout parseable: the model's own prints and the budget report go to stderr
    machine = args.output is None and not args.quiet and (args.format in ("json", "csv"))
    with contextlib.redirect_stdout(sys.stderr) if machine else contextlib.nullcontext():
        s = _run(spec, format=args.format, depth=args.depth, columns=columns)
    if not s.forward_ran:  # a class without forward (ModuleList, ModuleDict): a parameter-only summary
        _refuse_forward_budgets(spec, f"{escape(s.model_type)} defines no forward")
    # verdict lines name the model as the user knows it, not by the factory that built it
    spec = dataclasses.replace(spec, name=args.name or s.model_type)
    text = s.render(args.format, depth=args.depth, columns=columns, fold=args.fold)
    if s.memory is not None and (args.format or "classic") in ("classic", "tree"):
        text += "\n\n" + s.render("memory")
    if args.output is not None:
        _emit(text, args.output)
    elif not args.quiet:
        _emit(text, None)
    code, lines = _judge(spec, s, base, "text", quiet=args.quiet)
    if lines:
        _emit("\n".join(lines), None, sys.stderr if machine else sys.stdout)
    return code


def _refuse_forward_budgets(spec: ModelSpec, why: str) -> None:
    """A budget measured on a forward (MACs; the estimated total size, which holds the input and
    activations) cannot be held when no forward runs: a usage error, never a silent pass.

    Raises:
        _UsageError: ``--max-macs`` or ``--max-total-bytes`` was given.
    """
    for key, what in (("max_macs", "MACs need an input and a forward"),
                      ("max_total_bytes", "the estimated total size needs the input and activation sizes of a forward"),
                      ("max_train_memory", "the train memory is the peak of a measured step"),
                      ("max_inference_memory", "the inference memory is the peak of a measured forward")):
        if key in spec.limits:
            raise _UsageError(f"--{key.replace('_', '-')}: {what}, but {why}; the parameter budgets "
                              "(--max-params, --max-trainable-params, --max-param-bytes) need none")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise _UsageError(f"--kwargs: not valid JSON ({err}); expected an object such as '{{\"depth\": 50}}'") from None
    if not isinstance(value, dict):
        raise _UsageError(f"--kwargs: expected a JSON object such as '{{\"depth\": 50}}', got {text!r}")
    return value


def _run(spec: ModelSpec, count_macs: bool = False, **view: Any) -> Summary:
    """Build the spec's model and summarize it (MACs counted when asked, or when a budget or a
    baseline needs them; otherwise as the format decides).

    Raises:
        TargetError: the model cannot be loaded or built (``sys.exit()`` called meanwhile included).
        ForwardError: its forward failed, or called ``sys.exit()``.
    """
    from .._api import summary
    from .target import exit_call, loaded_target

    with loaded_target(spec.target, spec.kwargs, spec.base_dir, spec.device) as model:
        sizes = spec.input_size
        macs = True if count_macs or "max_macs" in spec.limits or spec.baseline is not None else None
        try:
            return summary(model, sizes[0] if sizes and len(sizes) == 1 else sizes, spec.batch_size, spec.device,
                           spec.dtypes, mode=spec.mode, verbose=0, macs=macs, **spec.memory_kwargs, **view)
        except SystemExit as err:  # summary() restored the model before this propagated
            raise ForwardError(f"the model's forward called {exit_call(err)}", "", type(model).__name__,
                               None) from err


def _judge(spec: ModelSpec, s: Summary, base: Summary | None, fmt: str,
           quiet: bool = False) -> tuple[int, list[str]]:
    """Budget lines, then growth lines and (unless ``quiet``) the diff against ``base``; the exit
    code (0 or 1). The model's name is shown escaped: a name from a config file cannot forge a line."""
    from .._reporting.diff import diff_summaries, growth_checks, render_diff

    from .budget import fit_check

    name = escape(spec.name)
    results: list[Check | Growth] = list(evaluate(s, spec.limits, name))
    fit = fit_check(s, name)
    if fit is not None:
        results.append(fit)
    blocks = []
    if base is not None:
        diff = diff_summaries(base, s)
        if not quiet:
            blocks.append(render_diff(diff, fmt, f"{name}: {spec.baseline} -> now"))
        if spec.max_growth is not None:
            results += growth_checks(diff, spec.max_growth, name)
    lines = [r.message for r in results] + blocks
    return (OK if all(r.ok for r in results) else OVER), lines


def _check(args: argparse.Namespace) -> int:
    from .config import find_config, load_config

    path = args.config or find_config()
    specs = load_config(path)
    names = list(dict.fromkeys(args.names))  # `check small small` checks small once
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise _UsageError(f"{path}: no model named {unknown[0]!r}; its models are {', '.join(specs)}")
    chosen = [specs[n] for n in names or specs]
    growth = None if args.max_growth is None else _growth(args.max_growth)
    if args.baseline and not os.path.isdir(args.baseline) and len(chosen) > 1:
        raise _UsageError(f"--baseline {args.baseline} is one summary but {len(chosen)} models are checked; pass "
                          "a directory holding NAME.json per model, or name one model")
    resolved = []
    for spec in chosen:
        baseline = spec.baseline
        if args.baseline:
            baseline = _named_file(args.baseline, spec.name) if os.path.isdir(args.baseline) else args.baseline
        spec = dataclasses.replace(spec, baseline=baseline, max_growth=spec.max_growth if growth is None else growth)
        if spec.max_growth is not None and spec.baseline is None:
            raise _UsageError(f"{spec.name}: a max growth needs a baseline (--baseline FILE|DIR, or baseline = "
                              "\"FILE\" in its table)")
        resolved.append(spec)
    md = args.format == "markdown"
    report, worst, over, failed = [], OK, 0, 0
    for spec in resolved:
        code, lines = _check_one(spec, args.save_baselines, args.format)
        worst, over, failed = max(worst, code), over + (code == OVER), failed + (code > OVER)
        if md:
            lines = [x if x.startswith("#") else f"```text\n{x}\n```" if "\n" in x else f"- {x}" for x in lines]
            lines.insert(0, f"### {escape(spec.name)}")
        report.append("\n".join(lines))
    n = len(chosen)
    report.append(f"checked {n} model{'s' * (n != 1)}: {n - over - failed} ok, {over} over budget, {failed} failed")
    _emit("\n\n".join(report) if md else "\n".join(report), args.output)
    return worst


def _check_one(spec: ModelSpec, save_to: str | None, fmt: str) -> tuple[int, list[str]]:
    """One model of ``check``: its exit code and report lines; its failures, even unexpected ones,
    are reported, not raised, so that the other models are still checked."""
    from .._reporting.diff import load_summary

    try:
        base = None if spec.baseline is None else load_summary(spec.baseline)
        s = _run(spec, count_macs=bool(save_to))
        if save_to:
            os.makedirs(save_to, exist_ok=True)
            _emit(s.to_json(), _named_file(save_to, spec.name), what="--save-baselines")
        code, lines = _judge(spec, s, base, fmt)
        return code, lines or [_measured(escape(spec.name), s)]
    except ForwardError as err:  # the failure report: several lines, the model's own names
        return FORWARD_FAILED, [f"{escape(spec.name)}: {err}"]
    except (NetsummaryError, OSError, _UsageError) as err:
        return USAGE, [escape(f"{spec.name}: error: {err}")]  # one line, whatever names it holds
    except Exception as err:
        return USAGE, [f"{escape(spec.name)}: error: {_unexpected(err)}"]


def _named_file(directory: str, name: str) -> str:
    """``directory/NAME.json``, a model's baseline file; a name that is not a safe file name (the
    config refuses those already, see :func:`~netsummary._safeio.file_name_problem`) is refused
    here too, so that no name can write outside ``directory`` or make an odd file name there.

    Raises:
        _UsageError: ``name`` is not a safe file name.
    """
    problem = file_name_problem(name)
    if problem:
        raise _UsageError(f"model name {escape(repr(name))} cannot be a file name under {directory} ({problem})")
    return os.path.join(directory, f"{name}.json")


def _growth(text: str) -> float:
    try:
        return parse_percent(text)
    except InputSpecError as err:
        raise _UsageError(f"--max-growth: {err}") from None


def _measured(name: str, s: Summary) -> str:
    macs = "" if s.total_macs is None else f", MACs {s.total_macs:,}"
    return f"{name}: total params {s.total_params:,}{macs}, param bytes {s.param_bytes:,} (no budget set)"


def _diff(args: argparse.Namespace) -> int:
    from .._reporting.diff import diff_summaries, growth_checks, load_summary, render_diff

    growth = None if args.max_growth is None else _growth(args.max_growth)
    diff = diff_summaries(load_summary(args.base), load_summary(args.new))
    text = render_diff(diff, args.format, f"{args.base} -> {args.new}", show_unchanged=args.all)
    checks = [] if growth is None else growth_checks(diff, growth)
    if checks:
        lines = [c.message for c in checks]
        text += "\n\n" + "\n".join(f"- {x}" if args.format == "markdown" else x for x in lines)
    _emit(text, args.output)
    return OK if all(c.ok for c in checks) else OVER


def _inspect(args: argparse.Namespace) -> int:
    from .._checkpoints.inspect import inspect_checkpoint

    try:
        limits = parse_limits(max_params=args.max_params, max_param_bytes=args.max_param_bytes)
    except InputSpecError as err:  # "max_params: invalid count ..." -> "--max-params: ..."
        key, _, why = str(err).partition(": ")
        raise _UsageError(f"--{key.replace('_', '-')}: {why}") from None
    ckpt = inspect_checkpoint(args.file)
    if not args.quiet:
        _emit(ckpt.render(args.depth), None)
    checks = evaluate_checkpoint(ckpt, limits, escape(os.path.basename(args.file)))
    if checks:
        _emit("\n".join(c.message for c in checks), None)
    return OK if all(c.ok for c in checks) else OVER
