"""Clients of the clouds that more than one part of mlfleet uses (the DR runbooks and drift)."""
