"""On-premise call tracking for Asterisk."""

__version__ = "0.1.0"
