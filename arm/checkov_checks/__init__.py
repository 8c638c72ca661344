"""checkov checks of our own for ACI container groups, where checkov has none.

Loaded with `checkov --external-checks-dir arm/checkov_checks` (make validate-arm). They run in
checkov's own venv, so they import only checkov and the standard library.
"""
