"""The offline real-audio training corpus: curated Debian sound packages, FSDD and synthesis."""
