"""Queen state in SQLite (WAL). Repository functions over one connection; no ORM."""
