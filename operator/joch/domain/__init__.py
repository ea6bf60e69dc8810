"""joch.domain."""
