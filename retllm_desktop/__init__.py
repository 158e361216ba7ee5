"""RetLLM Desktop: private natural-language search over your own photo folders.

The engine (everything except ``cli`` and ``gui``) is importable and usable headless;
the shells talk only to :mod:`retllm_desktop.library`.
"""

__version__ = "0.1.0"
