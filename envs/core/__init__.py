"""Pieces shared by every domain: errors, padded graph observations, episode records, rendering."""
