"""channeld package."""
