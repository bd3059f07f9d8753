"""queen-rbee: the brain. Every decision (routing, placement, cancellation) is made here."""
