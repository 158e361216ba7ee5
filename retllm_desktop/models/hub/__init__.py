"""The model hub: the registry (data), pinned and verified downloads, and adding local models."""
