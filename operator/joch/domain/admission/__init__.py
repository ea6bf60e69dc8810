"""joch.domain.admission."""
