"""audiovec: audio-text embedding models bootstrapped from multimodal LLMs."""

from audiovec import _moved
from audiovec.errors import (
    AudioDecodeError,
    AudiovecError,
    CheckpointError,
    ConfigError,
    DataError,
    UnsafeCheckpointError,
)

__version__ = "0.1.0"

_moved.install()  # old module names (audiovec.index, audiovec.compose, ...) keep importing for one release

__all__ = [
    "AudioDecodeError",
    "AudiovecError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "UnsafeCheckpointError",
    "__version__",
]


def __getattr__(name: str):  # lazy: importing audiovec must stay cheap (no torch/transformers)
    if name == "AudioTextEmbedder":
        from audiovec.model import AudioTextEmbedder

        return AudioTextEmbedder
    raise AttributeError(name)


from audiovec._lancedb_hook import install as _install_lancedb_hook  # noqa: E402

_install_lancedb_hook()  # LanceDB tables naming the "audiovec" embedding function work once audiovec is imported
