"""onchaind package."""
