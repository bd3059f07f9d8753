"""Pure decisions over a frozen snapshot: no I/O, no asyncio. Imports only core and api."""
