"""``python -m amicl``: the command line where the ``amicl`` script is not on the path."""

from amicl.cli import main

main()
