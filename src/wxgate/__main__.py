"""`python -m wxgate` runs the CLI."""

from wxgate.cli import main

main()
