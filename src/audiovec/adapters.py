"""Audio-only low-rank adapters on the backbone: the backbone learns to read audio tokens while text keeps
passing through the pretrained weights untouched, so the text side of the space stays the pretrained one.

Each adapted ``nn.Linear`` gets a LoRA pair (``down``: in → r, ``up``: r → out; ``up`` starts at zero, so a
fresh adapter changes nothing), applied by a forward hook that adds ``scale * up(down(x))`` to the layer's
output only inside :meth:`AudioAdapter.active`. The model enters it for audio and never for text. The
backbone's own modules and state-dict keys stay as they are; the pairs are saved apart
(``audio_adapter.*``), since they cannot be merged into weights that text shares.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from audiovec.errors import ConfigError


class LoRAPair(nn.Module):
    def __init__(self, base: nn.Linear, r: int) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"dtype": base.weight.dtype, "device": base.weight.device, "bias": False}
        self.down = nn.Linear(base.in_features, r, **kwargs)
        self.up = nn.Linear(r, base.out_features, **kwargs)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x.to(self.down.weight.dtype)))


class AudioAdapter(nn.Module):
    """LoRA pairs for the backbone's ``nn.Linear`` layers whose name ends with one of ``targets``
    (``"all-linear"``: every one), active only within :meth:`active`."""

    def __init__(
        self, backbone: nn.Module, r: int = 8, alpha: float = 16.0, targets: str | list[str] = "all-linear"
    ) -> None:
        super().__init__()
        if r < 1:
            raise ConfigError(f"audio adapter rank must be >= 1, got {r}")
        self.r, self.alpha, self.targets = int(r), float(alpha), targets
        self.scale = self.alpha / self.r
        self.pairs = nn.ModuleDict()
        self._enabled = False
        for name, module in backbone.named_modules():
            if isinstance(module, nn.Linear) and _selected(name, targets):
                pair = LoRAPair(module, self.r)
                self.pairs[name.replace(".", "__")] = pair
                module.register_forward_hook(self._hook(pair))
        if not self.pairs:
            raise ConfigError(f"audio adapter: no nn.Linear in the backbone matches targets {targets!r}")

    def _hook(self, pair: LoRAPair):
        def add_delta(
            module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> torch.Tensor:
            if not self._enabled:
                return output
            return output + (pair(inputs[0]) * self.scale).to(output.dtype)

        return add_delta

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Adapters on (for audio tokens); off again afterwards, also after an error."""
        previous, self._enabled = self._enabled, True
        try:
            yield
        finally:
            self._enabled = previous

    def to_config(self) -> dict[str, Any]:
        return {"r": self.r, "alpha": self.alpha, "targets": self.targets}


def _selected(name: str, targets: str | list[str]) -> bool:
    if targets == "all-linear":
        return True
    return any(name == t or name.endswith("." + t) for t in targets)
