"""Spam and repeat-caller hygiene: block list, hidden numbers, repeat floods, manual marks."""
