"""`python -m dagnats`: the command-line interface."""

from dagnats.cli.main import main

main()
