"""On-device face detection, alignment and recognition (dlib) for the face pass; see :mod:`.dlib_faces`."""

from .dlib_faces import EMBED_DIM, MIN_FACE_PX, MODEL_NAME, DetectedFace, FaceModel, bundled_model_files

__all__ = ["EMBED_DIM", "MIN_FACE_PX", "MODEL_NAME", "DetectedFace", "FaceModel", "bundled_model_files"]
