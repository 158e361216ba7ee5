"""The fine stage's multimodal LLM (GGUF via llama.cpp): prompting, scoring, caches.

``scorer.MllmScorer`` is the entry point; ``session.py`` is the only module that touches
llama-cpp-python / libmtmd internals (enforced by tests/test_llm_boundary.py). Module map in
``scorer.py``'s docstring.
"""
