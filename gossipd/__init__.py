"""gossipd package."""
