"""The `ooda` command line: where people meet the platform."""

__version__ = "0.1.0"
