"""Protocol handlers: wire format <-> serving.inference.InferenceService. They know no model files."""
