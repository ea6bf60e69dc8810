"""joch.cli."""
