"""lightningd package."""
