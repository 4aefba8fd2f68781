"""The `ablate` command: a thin layer of typer commands and rich views over the packages below."""
