"""The `hark` command: argument parsing, `check`, `demo` and `say`."""
