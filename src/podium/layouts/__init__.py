"""Readers of each competition's own on-disk data layout (real downloads and generated samples)."""
