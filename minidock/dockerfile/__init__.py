"""Dockerfile instructions: Docker's word lexer, and instructions applied to an image config.

A pure package: it imports only :mod:`minidock.errors` and the standard library, touches no
file and no store, so ``import -c``, ``commit -c`` and ``build`` can share one reading of an
instruction::

    'ENV A=1 B="two $A"'                                          one instruction line
        | instructions.parse_instruction
    Instruction(name="env", keyword="ENV", args='A=1 B="two $A"')
        | instructions.name_values (words.split_words, then words.process_word on
        |                           each: quotes removed, $VAR and ${VAR:-x} expanded
        |                           from the Env the config had before this line)
    [("A", "1"), ("B", "two ")]
        | instructions.apply_instruction
    config["Env"] == [..., "A=1", "B=two "]

    words.py          split on unquoted blanks; remove quotes, apply escapes, expand variables
    instructions.py   one instruction: its keyword, its argument forms (exec/JSON or shell,
                      name=value lists, ports, signals), applied to a config; apply_changes
                      for the ``--change`` lists of import and commit
"""
