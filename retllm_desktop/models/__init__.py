"""Model wrappers: the CLIP tokenizer and ONNX CLIP towers (no torch at run time)."""
