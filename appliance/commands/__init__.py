"""The `clinicbox` command line: `main.py` is the group, one module per command family.

Every command gets the invocation's settings and record store from `context.CommandContext`;
nothing else in the box imports this package.
"""
