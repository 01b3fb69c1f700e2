"""The CRM webhook: every finished call, delivered from an outbox in the database."""
