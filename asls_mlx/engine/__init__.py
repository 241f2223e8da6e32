"""Generation engine: model loading (incl. the embedded default), chat templates, streaming, adapters."""
