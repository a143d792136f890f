"""`python -m forge`: the headless CLI (the same commands as the `forge` console script). The terminal UI is the
console script's default command; forge's core never imports it (tests/test_import_hygiene.py)."""

from forge.cli import main

main(prog_name="forge")
