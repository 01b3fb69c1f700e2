"""store: SQLAlchemy models and the few queries that write and read them.

- `engine`: engines from plain URLs (`sqlite:///…`, `postgresql://…`), `check_database`
- `models`: the tables, one module per room (created only by the migrations in `migrations/`)
- `migrate`: `upgrade_to_head`, `downgrade_to_base`, `current_revision`, `is_at_head`
- `calls`: `save_call` (idempotent per node + linkedid), `list_calls`
- `first_callers`: `mark_first_time_callers`, `caller_has_earlier_call`
- `last_calls`: `last_call_ends`, when each manager's last conversation ended (routing)
- `writer`: `CallWriter`, the single writer task, with its spill file for outages
"""
