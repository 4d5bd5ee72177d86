"""Configuration: config.toml to typed settings, loading with errors a person can act on, model paths."""
