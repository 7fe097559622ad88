"""Benchmarks: Taskgraph against a raw-SQL floor and a naive GraphQL server (references)."""
