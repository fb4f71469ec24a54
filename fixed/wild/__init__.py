"""Session managers on the session machinery of real frameworks (track 3), fixed in the application.

Each module is one application's session layer, written the way applications
use the framework: load the session, change it, save it, once per request.
Nothing of the framework is patched or copied. They need the ``realworld``
extra (``pip install -e '.[realworld]'``); load one with ``--impl``:
``sessionlab race lost-updates --impl buggy/wild/django_cache.py``.
"""
