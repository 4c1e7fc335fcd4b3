"""The run directory: its file names, reading and writing its files, listing runs."""
