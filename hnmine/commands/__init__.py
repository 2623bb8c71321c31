"""CLI commands, one module each: they parse options and render; the work happens in stages and jobs."""
