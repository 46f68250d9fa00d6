"""Training side of seqserve: datasets -> tokenizer -> Keras models -> SavedModel + ONNX -> model repository.

Never imports serving/; the model repository (models/README.md) and protos/ are the only contract.
"""
