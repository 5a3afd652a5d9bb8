"""A timm-like factory for tests/test_readability.py: ``cli_factory.py:create_model`` builds a model
by name, so the factory's own name says nothing about which model it built.

Parameter counts (elements), by hand:
    create_model("small"): SmallNet = Linear(16, 4) = 16*4 + 4 = 68
    create_model("wide"):  WideNet  = Linear(16, 32) = 16*32 + 32 = 544
"""

from torch import nn


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(x)


class WideNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16, 32)

    def forward(self, x):
        return self.fc(x)


def create_model(model_name: str = "small") -> nn.Module:
    return {"small": SmallNet, "wide": WideNet}[model_name]()
