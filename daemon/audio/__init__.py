"""Audio edges: capture, playback, resampling, chimes and device discovery."""
