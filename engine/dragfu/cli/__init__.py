"""The `dragfu` command line."""
