"""Test-wide fixtures: real infrastructure discovery lives in `ooda.testing`."""

pytest_plugins = ["ooda.testing"]
