"""Training data: manifests, dataset preparation, contamination guard, datasets and samplers.

The library proper never imports this package; training code and the ``audiovec data`` command do. Names
are imported on first use, so a light submodule (``data.manifest``, ``data.synth.common``) does not pull in
torch through ``data.datasets``.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BucketBatchSampler": "datasets", "ManifestDataset": "datasets", "MixtureDataset": "datasets",
    "SampleKey": "datasets", "collate_audio_text": "datasets", "make_dataloader": "datasets",
    "Exclusion": "exclude", "apply_exclusions": "exclude", "row_keys": "exclude",
    "iter_manifest": "manifest", "manifest_stats": "manifest", "read_manifest": "manifest",
    "write_manifest": "manifest",
    "TextPairDataset": "text_pairs", "collate_text_pairs": "text_pairs", "fever_to_pairs": "text_pairs",
    "nli_to_pairs": "text_pairs", "read_text_pairs": "text_pairs", "scifact_to_pairs": "text_pairs",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"audiovec.data.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
