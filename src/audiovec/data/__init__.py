"""Training data: manifests, dataset preparation, contamination guard, datasets and samplers.

The library proper never imports this package; training code and the ``audiovec data`` command do.
"""

from audiovec.data.datasets import (
    BucketBatchSampler,
    ManifestDataset,
    MixtureDataset,
    SampleKey,
    collate_audio_text,
    make_dataloader,
)
from audiovec.data.exclude import Exclusion, apply_exclusions, row_keys
from audiovec.data.manifest import iter_manifest, manifest_stats, read_manifest, write_manifest
from audiovec.data.text_pairs import (
    TextPairDataset,
    collate_text_pairs,
    fever_to_pairs,
    nli_to_pairs,
    read_text_pairs,
    scifact_to_pairs,
)

__all__ = [
    "BucketBatchSampler",
    "Exclusion",
    "ManifestDataset",
    "MixtureDataset",
    "SampleKey",
    "TextPairDataset",
    "apply_exclusions",
    "collate_audio_text",
    "collate_text_pairs",
    "iter_manifest",
    "make_dataloader",
    "manifest_stats",
    "fever_to_pairs",
    "nli_to_pairs",
    "scifact_to_pairs",
    "read_manifest",
    "read_text_pairs",
    "row_keys",
    "write_manifest",
]
