"""OCI data, pure: parsed and validated, no I/O.

    runtime.py   the runtime-spec config.json of a bundle, as the runtime reads it
    image.py     image-spec manifests and indexes, as a registry or an archive sends them
"""
