"""A summary does not pull in torch's compiler stack: its dispatch modes opt out of torch's
``_disable_dynamo`` wrapper, which imports ``torch._dynamo`` (about a second) on the first op."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_first_summary_with_macs_does_not_import_dynamo():
    code = textwrap.dedent(
        """
        import sys
        from torch import nn
        from netsummary import summary
        m = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
        s = summary(m, (4,), macs=True, mode="train", verbose=0)
        assert s.total_macs == 4 * 4 + 4 * 2, s.total_macs  # per sample: 16 + 8
        print("torch._dynamo" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_import_does_not_load_the_mac_machinery():
    """``torch.utils.flop_counter`` pulls in triton (about 0.1-0.4 s): imported only when MACs are counted."""
    code = textwrap.dedent(
        """
        import sys
        import netsummary
        from torch import nn
        before = "torch.utils.flop_counter" in sys.modules
        netsummary.summary(nn.Linear(2, 2), (2,), verbose=0)  # classic: no MACs
        classic = "torch.utils.flop_counter" in sys.modules
        assert netsummary.summary(nn.Linear(2, 2), (2,), macs=True, verbose=0).total_macs == 4
        print(before, classic, "torch.utils.flop_counter" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]
