"""The Qt (PySide6) desktop shell over :class:`retllm_desktop.library.Library`.

Entry point: :func:`retllm_desktop.gui.app.run_app`. Everything slow (model loading, indexing, search,
reranking, thumbnail decoding) runs in QThreadPool workers; the UI thread only paints and reacts.
"""
