"""`python -m vultrino` runs the CLI."""

from vultrino.cli import main

main()
