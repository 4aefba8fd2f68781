"""`python -m ablation.cli`, the `ablate` command without its console script."""

from ablation.cli.main import command

command()
