"""The corpus on Django: one project served both ways, by ``runserver`` (WSGI) and by uvicorn (ASGI).

No database and no app of its own: the views are plain functions, routed by ``urls.py``.
"""
