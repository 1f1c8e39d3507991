"""The subcommands of the ``minivl`` command line, one module each.

Each module defines ``register(subparsers)``, adding its parser with
``set_defaults(func=...)``; ``minivl.cli`` finds every module here, so adding
a command never means editing a shared list.
"""
