"""Shared plumbing of the OODA platform and the SDK other teams use to consume its events."""

__version__ = "0.1.0"
