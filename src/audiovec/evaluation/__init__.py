"""Measuring models: retrieval metrics, the retrieval sets (AudioCaps, Clotho, AudioSetStrong and manifests),
``evaluate`` over them, the MTEB wrapper, and reports."""
