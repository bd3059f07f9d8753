"""rbee-hive: one per machine. Detects devices, resolves models, supervises workers.

Imports core, api, models, engines (names only) and web; never the queen.
"""
