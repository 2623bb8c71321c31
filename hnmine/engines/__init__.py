"""Engines: the machinery under the stages (encoders, indexes, search, Ray)."""
