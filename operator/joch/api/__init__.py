"""joch.api."""
