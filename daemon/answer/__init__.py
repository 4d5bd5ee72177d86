"""What answers a request: the responder seam (cloud with fallback, local voice, chime) and its backends."""
