"""The cascade backend: speech-to-text → chat model → voice, each through any OpenAI-compatible server.

One module per stage (stt, llm, tts), the errors and clients they share (stage), and the responder that
strings them together behind the same seam as the Realtime one (daemon.answer.responder).
"""
