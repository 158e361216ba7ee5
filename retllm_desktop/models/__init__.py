"""The models, in three parts: ``clip`` (coarse stage), ``llm`` (fine stage) and ``hub`` (registry, downloads)."""
