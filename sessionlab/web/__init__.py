"""The web demo: the managers behind a web app (app), served by gunicorn (server), under load (load).

Needs the ``web`` extra: ``pip install -e '.[web]'``.
"""
