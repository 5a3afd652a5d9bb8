"""The command line's argument parsers: ``netsummary TARGET`` (summarize a model) and the ``check``,
``diff`` and ``inspect`` commands, with their help texts; a command line argparse rejects raises
:class:`_UsageError` (one line, exit 2) instead of printing the usage and exiting.

Importing this module does not import torch: the choices that live beside torch-dependent code
(the config's modes and keys, the output formats) are imported when a parser is built.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

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
