"""The closed-loop demo: a real trace replayed as live load, the platform scaling by itself."""
