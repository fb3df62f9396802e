"""pcxbatch: bulk user status changes for the PCX Users API, row by row, with a report."""

#: The one home of the version: pyproject.toml reads it, the User-Agent and reports show it.
__version__ = "0.1.0"
