"""Storage drivers: overlay2 in Docker's on-disk layout (overlay2.py) and atomic writes."""
