"""Torch-free plumbing every room may import: validation, io, runs, executors, statistics, registries, CLI."""
