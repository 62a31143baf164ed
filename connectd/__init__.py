"""connectd package."""
