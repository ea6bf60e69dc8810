"""joch.kube."""
