"""pcxbatch: bulk user status changes for the PCX Users API, row by row, with a report."""

__version__ = "0.1.0"
