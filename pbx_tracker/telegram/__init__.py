"""Callback reminders in Telegram: a bot that messages managers and takes their button presses."""
