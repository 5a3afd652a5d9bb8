"""The fits= verdict: sizes and devices, headroom and shortfall, the largest batch and context."""

from __future__ import annotations

import pytest
import torch

from netsummary import DeviceError, InputSpecError, InputTypeError
from netsummary._memory.verdict import FRAGMENTATION, fit_verdict, parse_fits

GIB, MIB = 2**30, 2**20
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_sizes_use_the_project_units():
    assert parse_fits("24GiB").bytes == 24 * GIB
    assert parse_fits("80GB").bytes == 80 * 10**9
    assert parse_fits(12345).bytes == 12345
    assert parse_fits("24GiB").device is None


def test_headroom_shortfall_and_named_overheads():
    fit = fit_verdict(peak=10 * GIB, capacity=parse_fits("24GiB"), batches=((8, 10 * GIB),))
    frag = -(-10 * GIB // 10)  # ⌈10% × 10 GiB⌉ = 1,073,741,824
    assert [o.name for o in fit.overheads] == ["allocator rounding, fragmentation", "kernel workspaces", "CUDA context"]
    assert fit.overheads[0].bytes == frag and fit.overhead_bytes == frag  # the other two are not counted for a size
    assert fit.fits and fit.margin_bytes == 24 * GIB - 10 * GIB - frag  # 13 GiB headroom
    assert fit.largest_batch is None  # one measurement: no slope, nothing assumed
    short = fit_verdict(peak=10 * GIB, capacity=parse_fits("10GiB"))
    assert not short.fits and short.margin_bytes == -frag
    text = str(short)
    assert text.startswith("Fits in 10.00 GiB: no, 1.00 GiB short (peak 10.00 GiB + overheads 1.00 GiB = 11.00 GiB)")
    assert "CUDA context" in text and "not counted for a size" in text
    assert all(len(line) <= 120 for line in text.splitlines())


def test_largest_batch_from_two_measurements_is_not_proportional():
    # peak(b) = 2 GiB fixed + 100 MiB × b: measured at 16 (3.5625 GiB) and 8 (2.78125 GiB)
    peaks = {b: 2 * GIB + b * 100 * MIB for b in (16, 8)}
    fit = fit_verdict(peaks[16], parse_fits("12GiB"), batches=((16, peaks[16]), (8, peaks[8])))
    assert (fit.fixed_bytes, fit.per_sample_bytes) == (2 * GIB, 100 * MIB)
    # (12 GiB / 1.1 − 2 GiB) / 100 MiB = (11,170.9 − 2,048) / 100 = 91.2 -> 91 (proportional would say 12/3.5625*16 = 53)
    assert fit.largest_batch == 91
    b = fit.largest_batch
    assert (2 * GIB + b * 100 * MIB) * (1 + FRAGMENTATION) <= 12 * GIB < (2 * GIB + (b + 1) * 100 * MIB) * 1.1
    assert "largest batch that fits: 91\n    from batches 16 and 8: 2.00 GiB fixed + 100.00 MiB per sample\n" in str(fit)
    nothing = fit_verdict(peaks[16], parse_fits("2GiB"), batches=((16, peaks[16]), (8, peaks[8])))
    assert nothing.largest_batch == 0
    assert "largest batch that fits: none, not even 1\n    from batches 16 and 8" in str(nothing)


def test_largest_context_solves_the_given_growth():
    # peak(t, batch 2) = 1 GiB + 2 × 1 MiB × t;  (8 GiB / 1.1 − 1 GiB) / 2 MiB = 3,211.6 -> 3,211 tokens
    fit = fit_verdict(GIB + 2 * 512 * MIB, parse_fits("8GiB"), batches=((2, GIB + 2 * 512 * MIB),), context=512,
                      context_bytes=lambda t, b: GIB + b * t * MIB, context_limit=4096, context_note="by hand")
    assert fit.largest_context == 3211
    assert ("largest context that fits at batch 2: ~3,211 tokens (the model's max_position_embeddings: 4,096)\n"
            "    by hand") in str(fit)


@pytest.mark.parametrize("fits, error, match", [
    ("24G", InputSpecError, r"fits: expected a size .*got '24G' .'G' is ambiguous"),
    ("lots", InputSpecError, r"fits: expected a size with a unit such as '24GiB'.*got 'lots'"),
    (0, InputSpecError, "a size of 0 bytes"),
    (-5, InputSpecError, "must not be negative"),
    (2.5e9, InputTypeError, r"an int of bytes.*got 2500000000.0 \(float\)"),
    ([24], InputTypeError, r"got \[24\] \(list\)"),
    ("cpu", InputSpecError, r"fits: got 'cpu'; cpu memory has no fixed budget .*give its size instead, e.g. fits='64GiB'"),
    ("meta", InputSpecError, "meta tensors hold no memory, so the meta device has no budget"),
    ("cuda:x", InputSpecError, "not a device torch knows"),
], ids=["ambiguous-unit", "word", "zero", "negative", "fraction", "list", "cpu", "meta", "bad-device"])
def test_bad_fits(fits, error, match):
    with pytest.raises(error, match=match):
        parse_fits(fits)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without CUDA")
def test_cuda_without_cuda_is_a_device_error():
    with pytest.raises(DeviceError, match="fits: got 'cuda:0', but CUDA is not available here; give a size"):
        parse_fits("cuda:0")


@cuda
def test_cuda_device_reads_free_memory():
    free, total = torch.cuda.mem_get_info(0)
    cap = parse_fits("cuda:0")
    assert cap.device == "cuda:0" and cap.total_bytes == total
    assert abs(cap.bytes - free) <= 64 * MIB  # other processes may allocate in between
    assert cap.workspace_bytes == torch.backends.cuda.cublas_workspace_size()
    fit = fit_verdict(GIB, cap)
    assert fit.overheads[1].bytes == cap.workspace_bytes
    assert "already out of the free memory" in fit.overheads[2].note
    with pytest.raises(DeviceError, match="only"):
        parse_fits(f"cuda:{torch.cuda.device_count()}")
