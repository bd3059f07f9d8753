"""Domain vocabulary shared by every daemon. No I/O, no framework imports."""
