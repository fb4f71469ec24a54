"""The web demo: the managers behind a web app (app), served by waitress (server), under load (load).

Needs the ``web`` extra: ``pip install -e '.[web]'``.
"""
