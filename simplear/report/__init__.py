"""A run's report from its journal: scores and timings (summary), image grids, the HTML page, and the files written."""
