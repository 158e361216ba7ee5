"""The fine stage's multimodal LLM (GGUF via llama.cpp): prompting, scoring, caches."""
