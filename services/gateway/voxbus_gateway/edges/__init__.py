"""Caller edges: one small adapter per media-stream protocol over the one call model."""
