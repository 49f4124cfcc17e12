"""Readers for the original file formats; each error names file:line (or record) and field."""
