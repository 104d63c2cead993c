"""driftloop's commands (``driftloop --help``)."""
