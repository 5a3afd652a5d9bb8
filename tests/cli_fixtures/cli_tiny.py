"""Small models for tests/test_cli.py: targets ``cli_tiny.py:NAME`` of every kind NAME can be.

Parameter counts (elements), by hand:
    Tiny:               Linear(16, 8) + ReLU + Linear(8, 2) = (16*8 + 8) + (8*2 + 2) = 136 + 18 = 154
    build_tiny(hidden): Linear(16, hidden) + ReLU + Linear(hidden, 2); hidden=4: 68 + 10 = 78
MACs per sample (Linear: in * out): Tiny 16*8 + 8*2 = 144.
"""

from torch import nn


class Tiny(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def build_tiny(hidden: int = 8) -> nn.Module:
    """A factory: takes --kwargs."""
    return Tiny(hidden=hidden)


class Broken(nn.Module):
    """Its forward fails: fc2 expects 4 features but fc1 makes 8."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x))


def needs_depth(depth: int) -> nn.Module:
    """A factory whose own check raises."""
    if depth not in (18, 34):
        raise ValueError(f"no weights for depth {depth}")
    return Tiny()


def returns_int() -> int:
    return 3


class NotAModule:
    pass


instance = Tiny()  # an nn.Module instance: used as it is
not_a_model = 42
