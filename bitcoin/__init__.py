"""bitcoin package."""
