"""joch.manifests."""
