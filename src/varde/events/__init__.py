"""The normalised event schema and the stores that hold events."""
