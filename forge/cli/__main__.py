"""`python -m forge.cli`: the headless CLI without the terminal UI."""

from forge.cli import main

main()
