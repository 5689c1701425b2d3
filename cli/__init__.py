"""The ``archdsl`` command line: a thin client of the public API in :mod:`archdsl`.

Installed as the import package ``archdsl_cli``; the console script runs
:func:`archdsl_cli.main.main`.
"""
