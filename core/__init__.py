"""Shared ground for every part: settings, database access, migrations, a private PostgreSQL."""
