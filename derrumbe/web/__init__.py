"""The web page (`derrumbe serve`): FastAPI over a SQLite job queue, a static page.

Behind the `web` extra: fastapi and uvicorn are imported only when the server starts.
"""
