"""`python -m lepton_cli ...`: the `lepton` command without the console script on PATH."""

from lepton_cli.main import main

main()
