"""`python -m lepton_runtime <train|compress|package> --config FILE`."""

from lepton_runtime.cli import main

main()
