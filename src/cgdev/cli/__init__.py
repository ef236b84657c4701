"""Front end: argument parsing and rendering only; the work happens in core, adapters and operations."""
