"""One runner per system: ``python -m systems NAME COMMAND ...`` (see __main__.py, common.py)."""
