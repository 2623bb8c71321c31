"""Jobs: whole runs (checkpointed mining, denoising, teacher training) usable from Python and the CLI."""
