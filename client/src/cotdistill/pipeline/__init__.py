"""The ``cotdistill`` CLI: the pipeline driver, a client of the services."""
