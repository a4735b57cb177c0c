"""Placeholder until this data source lands."""

LOADERS = {}
