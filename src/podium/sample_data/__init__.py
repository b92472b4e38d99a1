"""Seeded generators of small, realistic sample data in each competition's own on-disk layout."""
