"""Alembic environment of pbx-tracker (shipped in the wheel as pbx_tracker._migrations)."""
