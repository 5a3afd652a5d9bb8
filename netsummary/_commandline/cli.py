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

_UNIT_TEXT = ("units: counts take SI suffixes (12M = 12,000,000; 1.5G); byte sizes need a unit:\n"
              "  MB = 10**6 bytes, MiB = 2**20 bytes (also kB/GB/TB and KiB/GiB/TiB); growth is a percentage (2%).")
_UNITS = (f"{_UNIT_TEXT}\nexit codes: 0 ok (within budget), 1 over budget, 2 usage or input error, "
          "3 the model's forward failed")
_INSPECT_CODES = "exit codes: 0 ok (within budget), 1 over budget, 2 usage or input error (e.g. not a checkpoint)"
_SUMMARY_EPILOG = f"""\
commands:
  netsummary TARGET [options]         summarize a model (this help)
  netsummary check [NAME ...]         check the models of [tool.netsummary] in pyproject.toml
  netsummary diff BASE.json NEW.json  compare two saved summaries (per-layer params and MACs)
  netsummary inspect FILE             a checkpoint's tensors per module prefix, without model code

examples:
  netsummary examples/discriminator.py:discriminator --input-size 3,64,64
  netsummary mypkg.models:build_model --kwargs '{{"depth": 50}}' --input-size 3,224,224 --format json
  netsummary torchvision.models:resnet18 --input-size 3,224,224 --depth 2 --columns params,macs
  netsummary examples/discriminator.py:discriminator --input-size 3,64,64 --max-params 12M --max-macs 500M -q
  netsummary examples/discriminator.py:discriminator --input-size 3,64,64 --format json --output base.json
  netsummary examples/discriminator.py:discriminator --input-size 3,64,64 --baseline base.json --max-growth 2%
  netsummary examples/discriminator.py:discriminator --input-size 3,64,64 --batch-size 32 --estimate train \\
      --optimizer adamw --fits 24GiB --max-train-memory 20GiB
  netsummary mypkg.llm:build --input-size 2048 --dtypes long --estimate train --world-size 8 --strategy fsdp --fits cuda:0

{_UNITS}"""


class _UsageError(Exception):
    """A command line argparse rejects; reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print the usage and exit
        raise _UsageError(f"{message} (see {self.prog} --help)")


def _parser(prog: str, description: str, epilog: str) -> _Parser:
    return _Parser(prog=prog, description=description, epilog=epilog,
                   formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_budgets(p: argparse.ArgumentParser, keys: Sequence[str]) -> None:
    helps = {"max-params": "total parameter elements, e.g. 12M", "max-trainable-params": "trainable elements",
             "max-macs": "multiply-accumulates for the batch as shown, e.g. 500M",
             "max-param-bytes": "bytes of the parameters, e.g. 50MiB or 50MB",
             "max-total-bytes": "estimated total bytes (input + 2 x outputs + params), e.g. 100MiB",
             "max-train-memory": "measured peak of one training step (per rank with --world-size), e.g. 24GiB",
             "max-inference-memory": "measured peak of one inference forward, e.g. 8GiB"}
    group = p.add_argument_group("budgets (over budget: exit 1, one line per violation)")
    for key in keys:
        group.add_argument(f"--{key}", metavar="N", help=helps[key])


def _summary_parser() -> _Parser:
    from .config import MODES
    from .._reporting.formats import FORMATS

    p = _parser("netsummary", "Summarize a PyTorch model: per-layer shapes, params, MACs, bytes; hold it to budgets.",
                _SUMMARY_EPILOG)
    p.add_argument("target", metavar="TARGET", help="path/to/file.py:NAME or package.module:NAME; NAME is an "
                   "nn.Module subclass, a factory function or an nn.Module instance")
    p.add_argument("--version", action="version", version=f"netsummary {_version()}")
    p.add_argument("--input-size", action="append", metavar="3,64,64",
                   help="one sample's shape without the batch; repeat for several inputs (without it: a "
                   "parameter-only summary, no forward run)")
    p.add_argument("--dtypes", metavar="float32,long", help="one dtype per input")
    p.add_argument("--batch-size", type=int, metavar="N", help="batch to run and show (default -1: shown as -1)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or meta (a class or factory is built there)")
    p.add_argument("--mode", choices=MODES, help="eval (default), train or same")
    p.add_argument("--kwargs", metavar="JSON", help="keyword arguments for the class or factory, a JSON object")
    view = p.add_argument_group("output")
    view.add_argument("--format", choices=list(FORMATS), help="classic (default; tree with --depth/--columns)")
    view.add_argument("--depth", type=int, metavar="N", help="tree depth (0 = the root only)")
    view.add_argument("--columns", metavar="a,b,c", help="tree columns, e.g. output_shape,params,macs")
    view.add_argument("--no-fold", dest="fold", action="store_false",
                      help="tree formats: show every repeated block instead of one 'layers.0–79 (Block) × 80' row")
    view.add_argument("--output", metavar="FILE", help="write the summary to FILE instead of stdout")
    view.add_argument("-q", "--quiet", action="store_true", help="print only the budget and growth verdict lines")
    view.add_argument("--name", help="the model's name in budget and growth lines (default: the built model's "
                      "class name, e.g. ResNet, not a factory's name such as create_model)")
    _add_budgets(p, ["max-params", "max-trainable-params", "max-macs", "max-param-bytes", "max-total-bytes",
                     "max-train-memory", "max-inference-memory"])
    mem = p.add_argument_group("memory (one measured step; --fits that does not fit: exit 1)")
    mem.add_argument("--estimate", metavar="KIND", help="train or inference: measure one training step or inference "
                     "forward (implied by --max-train-memory / --max-inference-memory)")
    mem.add_argument("--optimizer", metavar="NAME", help="sgd, sgd-momentum, adam, adamw (default), adagrad, rmsprop")
    mem.add_argument("--autocast", metavar="DTYPE", help="run the step under torch.autocast, e.g. bfloat16")
    mem.add_argument("--fits", metavar="SIZE|DEVICE", help="does it fit in 24GiB / 80GB / cuda:0 (free memory)? "
                     "also the largest batch (and context) that fits")
    mem.add_argument("--context", type=int, metavar="N", help="tokens per sequence of a transformers decoder (KV cache)")
    mem.add_argument("--world-size", type=int, metavar="N", help="per-rank figures of data-parallel training on N ranks")
    mem.add_argument("--strategy", metavar="NAME", help="with --world-size: ddp (default), zero2 or fsdp (ZeRO-3)")
    base = p.add_argument_group("baseline")
    base.add_argument("--baseline", metavar="FILE", help="a summary saved with --format json to compare with")
    base.add_argument("--max-growth", metavar="PCT", help="fail when total params or MACs grew more, e.g. 2%%")
    return p


def _check_parser() -> _Parser:
    from .config import KEYS
    from .._reporting.diff import DIFF_FORMATS

    p = _parser("netsummary check", "Summarize every model of [tool.netsummary.models.*] and check its budgets.",
                "example pyproject.toml:\n  [tool.netsummary.models.discriminator]\n"
                '  target = "examples/discriminator.py:discriminator"\n  input-size = [[3, 64, 64]]\n'
                '  max-params = "12M"\n  max-macs = "500M"\n\n'
                f"valid keys: {', '.join(KEYS)}\n\n{_UNITS} (the worst over all models)")
    p.add_argument("names", nargs="*", metavar="NAME", help="check only these models (default: all)")
    p.add_argument("--config", metavar="FILE", help="default: the nearest pyproject.toml upwards")
    p.add_argument("--baseline", metavar="FILE|DIR", help="a saved summary (one model) or a directory of NAME.json")
    p.add_argument("--max-growth", metavar="PCT", help="allowed growth of total params and MACs over the baseline")
    p.add_argument("--save-baselines", metavar="DIR", help="write each model's summary to DIR/NAME.json")
    p.add_argument("--format", choices=DIFF_FORMATS, default="text", help="report as text or GitHub Markdown")
    p.add_argument("--output", metavar="FILE", help="write the report to FILE instead of stdout")
    return p


def _diff_parser() -> _Parser:
    from .._reporting.diff import DIFF_FORMATS

    p = _parser("netsummary diff", "Compare two summaries saved with --format json: total and per-layer deltas.",
                "example:\n  netsummary diff base.json new.json --format markdown --max-growth 2%\n\n"
                "exit codes: 0 ok, 1 total params or MACs grew past --max-growth, 2 usage or input error")
    p.add_argument("base", metavar="BASE.json")
    p.add_argument("new", metavar="NEW.json")
    p.add_argument("--format", choices=DIFF_FORMATS, default="text", help="text (default) or markdown")
    p.add_argument("--max-growth", metavar="PCT", help="fail when total params or MACs grew more, e.g. 2%%")
    p.add_argument("--all", action="store_true", help="list unchanged layers too")
    p.add_argument("--output", metavar="FILE", help="write the diff to FILE instead of stdout")
    return p


def _inspect_parser() -> _Parser:
    p = _parser("netsummary inspect", "Tensors of a checkpoint per module prefix, without the model's code "
                "(safetensors: header only; .pt/.pth/.bin: weights-only, never executing pickled code).",
                "example:\n  netsummary inspect model.safetensors --depth 2 --max-params 7G\n"
                "  netsummary inspect model.safetensors.index.json   # a sharded checkpoint: every shard, summed\n\n"
                "params: every tensor but normalization buffers (names ending in running_mean, running_var,\n"
                "  num_batches_tracked), which are counted apart; a checkpoint does not say which other tensors\n"
                "  were buffers, so those count as params. GPTQ/AWQ: a qweight counts the parameters it packs\n"
                "  (32 / bits per int32 word; bits from quantize_config.json or config.json beside the file, else\n"
                "  from the qzeros/scales shapes); qzeros, scales and g_idx are quantization state, not params.\n"
                f"{_UNIT_TEXT}\n{_INSPECT_CODES}")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--depth", type=int, metavar="N", help="prefix levels to show (default: down to the tensors)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only budget lines")
    _add_budgets(p, ["max-params", "max-param-bytes"])
    return p


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C: the user knows why; a traceback of netsummary's internals helps no one
        with contextlib.suppress(Exception):
            print("netsummary: interrupted", file=sys.stderr)
        return INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
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
