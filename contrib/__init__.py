"""contrib package."""
