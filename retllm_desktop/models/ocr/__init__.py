"""On-device text reading (OCR) for the text pass; see :mod:`.engine`."""

from .engine import MODEL_NAME, OcrLine, OcrModel, OcrResult, OcrWord, bundled_model_dir

__all__ = ["MODEL_NAME", "OcrLine", "OcrModel", "OcrResult", "OcrWord", "bundled_model_dir"]
