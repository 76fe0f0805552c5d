"""Thin Kopf handlers: parse -> resolve -> place -> build -> apply -> status.

`lepton_operator.main` imports each module, which registers its handlers with Kopf.
"""
