"""Core layer: one settings object, state paths, data contracts, dataset versions, lineage types,
event names and errors. Imports nothing from any layer above it."""
