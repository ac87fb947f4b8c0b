"""GradCache: contrastive training of a large batch in small chunks, with the exact full-batch loss.

A contrastive loss couples every pair in the batch, so plain gradient accumulation is not the same
objective. GradCache (Gao et al., 2021) splits the step in three: (1) embed every chunk without
autograd, (2) compute the loss on the full batch of embeddings and its gradient with respect to
those embeddings, (3) re-embed each chunk with autograd and back-propagate the cached embedding
gradients. Random state is recorded before (1) and replayed before (3), so dropout masks match.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

Encode = Callable[[Any], Sequence[Tensor]]


class RngState:
    """The CPU and CUDA random state at one moment, restorable later."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _concat(outputs: list[Sequence[Tensor]]) -> list[Tensor]:
    return [torch.cat([o[i] for o in outputs], dim=0) for i in range(len(outputs[0]))]


def gradcache_step(
    encode: Encode,
    chunks: Sequence[Any],
    loss_fn: Callable[..., Tensor],
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Tensor:
    """One GradCache step: returns the (detached) full-batch loss after filling ``.grad``.

    ``encode(chunk)`` returns a tuple of embeddings (B_chunk, D), e.g. (audio, text); ``loss_fn``
    receives the concatenated full-batch tensors in the same order. Gradients accumulate into the
    parameters used by ``encode`` and by ``loss_fn`` (a learnable temperature). ``no_sync`` (DDP's
    ``model.no_sync``) wraps every backward but the last, so gradients are all-reduced once.
    """
    if not chunks:
        raise ValueError("gradcache_step needs at least one chunk")
    states, outputs = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RngState())
            outputs.append([t.detach() for t in encode(chunk)])
    after = RngState()
    full = [t.requires_grad_(True) for t in _concat(outputs)]
    loss = loss_fn(*full)
    loss.backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in full]
    offsets = _offsets([o[0].shape[0] for o in outputs])
    for n, (chunk, state) in enumerate(zip(chunks, states, strict=True)):
        state.restore()
        last = n == len(chunks) - 1
        ctx = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with ctx:
            out = encode(chunk)
            start, end = offsets[n]
            pairs = [(o, g[start:end]) for o, g in zip(out, grads, strict=True) if o.requires_grad]
            if pairs:
                torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    after.restore()
    return loss.detach()


def full_batch_step(encode: Encode, batch: Any, loss_fn: Callable[..., Tensor]) -> Tensor:
    """The plain step GradCache must reproduce: embed everything with autograd, backward once."""
    loss = loss_fn(*encode(batch))
    loss.backward()
    return loss.detach()


def _offsets(sizes: list[int]) -> list[tuple[int, int]]:
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return out


def split_batch(batch: dict[str, Any], chunk_size: int) -> Iterator[dict[str, Any]]:
    """Split a dict batch along dim 0 (tensors) / list index (lists) into chunks of ``chunk_size``."""
    n = _batch_len(batch)
    for start in range(0, n, chunk_size):
        yield {k: _slice(v, start, start + chunk_size) for k, v in batch.items()}


def _batch_len(batch: dict[str, Any]) -> int:
    for v in batch.values():
        if isinstance(v, (Tensor, list, tuple)):
            return len(v)
    raise ValueError("batch has no tensor or list entry to split")


def _slice(v: Any, start: int, end: int) -> Any:
    if isinstance(v, (Tensor, list, tuple)):
        return v[start:end]
    return v
