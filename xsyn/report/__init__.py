"""Reporting: tables, plots and image grids of the workflow's results."""
