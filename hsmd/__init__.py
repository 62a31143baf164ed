"""hsmd package."""
