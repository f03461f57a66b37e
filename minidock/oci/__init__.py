"""OCI data: the runtime-spec config.json (spec.py). Pure data and validation, no I/O."""
