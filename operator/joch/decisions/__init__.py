"""joch.decisions: the policy decision service."""
