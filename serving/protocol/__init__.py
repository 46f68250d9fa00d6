"""Protocol semantics, apart from both the wire handlers (serving.handlers) and the models."""
