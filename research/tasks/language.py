"""Placeholder until the language tasks land."""

TASKS = {}
