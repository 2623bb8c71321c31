"""Pipeline stages, one file each."""
