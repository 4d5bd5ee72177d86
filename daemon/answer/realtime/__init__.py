"""The OpenAI Realtime (GA) backend: the session client, its protocol events and its usage."""
