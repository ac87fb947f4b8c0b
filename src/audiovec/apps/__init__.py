"""What users do with a model: index and search a sound collection, classify zero-shot, route intents."""
