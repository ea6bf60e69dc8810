"""joch.webhooks."""
