"""Stepstone vs DBOS Transact: ``python -m bench --quick|--full`` (see bench/README.md)."""
