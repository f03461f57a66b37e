"""The command line: one module per family of commands, each a thin layer over the engine.

``main`` holds the click group and the boundary; ``runflags`` turns run/create flags into the
engine's options without click (the console script's fast path uses it); ``boundary`` turns an
exception into Docker's one error line and exit status; ``shared`` is what the commands share;
``format`` and ``gotemplate`` print tables and ``--format`` templates. Importing this package
imports nothing: ``minidock run`` pays only for what it uses.
"""
