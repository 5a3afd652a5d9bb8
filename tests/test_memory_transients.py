"""Copies a CPU kernel makes inside itself, counted by rule (netsummary/_memory/transients.py),
checked against torch.profiler's allocator events."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from netsummary._memory.live import LiveStorages
from netsummary._memory.transients import transient_bytes

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN (mkldnn)")


def _conv_backward():
    torch.manual_seed(0)
    conv = nn.Conv2d(128, 256, 4, 2, 1)
    x = torch.randn(2, 128, 16, 16, requires_grad=True)  # 2 × 128 × 16 × 16 × 4 B = 262,144 B
    y = conv(x)
    return x, y, torch.randn_like(y)


def test_the_profiler_sees_the_input_copy_the_rule_counts():
    x, y, g = _conv_backward()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True) as prof:
        y.backward(g)
    clones = [e.cpu_memory_usage for e in prof.events() if e.name == "aten::clone"
              and e.input_shapes and e.input_shapes[0] == [2, 128, 16, 16]]
    assert clones == [262_144]
    x2, y2, g2 = _conv_backward()
    with LiveStorages() as live:
        y2.backward(g2)
    assert "aten.convolution_backward" in live.transient_ops
    # the copy (262,144 B) is live with the outputs: grad input 262,144 + grad weight 256 × 128 × 16 × 4 = 2,097,152
    # + grad bias 1,024; it is gone after the op
    assert live.peak_event()[1] - live.live >= 262_144


def test_no_copy_is_counted_when_only_the_weight_gradient_is_asked():
    # the first convolution of a network: its input is data, no grad input, no copy (profiler: no clone)
    args = (torch.empty(2, 8, 4, 4), torch.empty(2, 3, 8, 8), torch.empty(8, 3, 4, 4), [8], [2, 2], [1, 1],
            [1, 1], False, [0, 0], 1, [False, True, True])
    assert transient_bytes("aten.convolution_backward", args) == 0
    meta = tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args[:10]) + ([True, True, True],)
    assert transient_bytes("aten.convolution_backward", meta) == 0  # not a CPU kernel


def test_lstm_backward_macs_are_not_a_silent_undercount():
    from netsummary._memory.step import estimate_memory

    torch.manual_seed(0)
    model = nn.LSTM(16, 32, batch_first=True)
    est = estimate_memory(model, (8, 16), batch_size=2)
    if "aten.mkldnn_rnn_layer_backward" not in " ".join(est.notes):
        pytest.skip("this build's LSTM backward is not the fused oneDNN kernel")
    # was "backward 20,480 (0.01 × forward)": the fused backward's own MACs had no formula
    assert est.backward_macs is None
    assert any(n.startswith("backward MACs unknown") and "a lower bound" in n for n in est.notes)
    assert "backward" not in [ln for ln in str(est).splitlines() if ln.lstrip().startswith("MACs")][0]
