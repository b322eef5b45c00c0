"""The head service: ASGI app with FastAPI REST and the Socket.IO server browsers connect to."""
