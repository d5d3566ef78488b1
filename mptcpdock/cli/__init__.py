"""The command line: every click command, one module per family (``lab``: plan, up,
status, exec, down; ``image``; ``run``: run and report; ``routes``; ``export``), gathered
into the :func:`main` group (``main``), with the consoles they print through (``console``).

The only package that imports click. It sits on top and may import every other stage; the
commands parse arguments and print, and leave the work to the stages below.
"""

from .main import main

__all__ = ["main"]
