"""The core: the one state machine, the assistant that owns the turn, and the commands a person gives."""
