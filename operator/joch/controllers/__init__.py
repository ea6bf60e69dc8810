"""joch.controllers."""
