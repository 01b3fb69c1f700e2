"""Asterisk's Channel Event Logging: the calls Asterisk logged itself, read back."""
