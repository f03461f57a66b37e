"""Docker builds: what a build reads before any container runs (pure, below the engine).

    context.py   which files of a context directory a build sees (.dockerignore rules)
    sources.py   the content hash of COPY/ADD sources (cache key and history line)
    metadata.py  the config-only instructions (ENV, CMD, WORKDIR, ...) and their history lines
"""
