"""CLIP: the torch-free tokenizer, the two ONNX towers run by onnxruntime, and the open_clip exporter."""
