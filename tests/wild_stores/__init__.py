"""Session layers on engines whose state lives in files or a database, written as applications write them.

``flask_filesystem`` is Flask-Session on cachelib's FileSystemCache,
``django_file`` Django's file session engine, ``django_db`` Django's database
session engine on a SQLite file. Each is a store of ``buggy/wild/`` moved onto
files or a database: ``on_files`` writes its source from that store, and from
``fixed/wild/`` the same store with the application's fixes.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

_DOCSTRING = ('"""Sessions in Django\'s cache session engine, used the way a Django view uses them.\n\n'
              'Written against Django 5.2 (``django.contrib.sessions.backends.cache`` on\n'
              '``LocMemCache``). Each call is one request: it builds a ``SessionStore`` for')
# store in tests/wild_stores -> (the store in buggy/ and fixed/ it moves onto files, the edits that do it)
EDITS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "flask_filesystem": ("flask_cachelib", [
        ('and cachelib 0.17 (``SimpleCache``, in memory).',
         'and cachelib 0.17 (``FileSystemCache``: one file per session in a folder).'),
        ("import threading\nimport time\n", "import tempfile\nimport threading\nimport time\n"),
        ("from cachelib import SimpleCache", "from cachelib import FileSystemCache"),
        ("on cachelib's SimpleCache\"", "on cachelib's FileSystemCache\""),
        ('def _new_app() -> Flask:\n    """The application: server-side sessions in an in-memory cachelib store."""',
         'def _new_app(folder: str) -> Flask:\n    """The application: server-side sessions in files, in a cachelib '
         'store on this folder."""'),
        ("SESSION_CACHELIB=SimpleCache(threshold=10_000_000, default_timeout=0),",
         "SESSION_CACHELIB=FileSystemCache(folder, threshold=0, default_timeout=0),"),
        ("        self._app = _new_app()",
         '        self._folder = tempfile.TemporaryDirectory(prefix="sessions-")\n'
         "        self._app = _new_app(self._folder.name)"),
        ("    def close(self) -> None:\n        self._closed = True",
         "    def close(self) -> None:\n        self._closed = True\n        self._folder.cleanup()"),
    ]),
    "django_file": ("django_cache", [
        (_DOCSTRING, '"""Sessions in Django\'s file session engine, used the way a Django view uses them.\n\n'
         'Written against Django 5.2 (``django.contrib.sessions.backends.file``: one file\n'
         'per session in the application\'s session folder). Each call is one request:\n'
         'it builds a ``SessionStore`` for'),
        ("import threading\nimport time\n", "import tempfile\nimport threading\nimport time\n"),
        ("if not settings.configured:  # the application's settings: sessions in a local-memory cache",
         "if not settings.configured:  # the application's settings: sessions in files"),
        ('        SESSION_ENGINE="django.contrib.sessions.backends.cache",\n'
         '        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",\n'
         '                            "LOCATION": "sessions", "TIMEOUT": None,\n'
         '                            "OPTIONS": {"MAX_ENTRIES": 10_000_000}}},\n',
         '        SESSION_ENGINE="django.contrib.sessions.backends.file",\n'),
        ("from django.contrib.sessions.backends.cache import SessionStore  # noqa: E402",
         "from django.contrib.sessions.backends.file import SessionStore as FileSessionStore  # noqa: E402"),
        ('cache session engine on LocMemCache"', 'file session engine"'),
        ('    """Sessions in Django\'s cache session engine; each call is one request."""\n\n'
         '    def __init__(self, clock: Callable[[], float] = time.time):\n        self._clock = clock\n',
         '    """Sessions in Django\'s file session engine; each call is one request."""\n\n'
         '    def __init__(self, clock: Callable[[], float] = time.time):\n        self._clock = clock\n'
         '        # Each manager is one application with its own session folder (SESSION_FILE_PATH).\n'
         '        self._folder = tempfile.TemporaryDirectory(prefix="sessions-")\n'
         '        self._store = type("SessionStore", (FileSessionStore,), {"_storage_path": self._folder.name})\n'),
        ("session = SessionStore()", "session = self._store()"),
        ("session = SessionStore(session_key=session_id)", "session = self._store(session_key=session_id)"),
        ("def _open(self, session_id: str) -> SessionStore:", "def _open(self, session_id: str) -> FileSessionStore:"),
        ("        return 0  # a deleted session leaves the cache at once: nothing waits to be released\n\n"
         "    def close(self) -> None:\n        self._closed = True",
         "        return 0  # a deleted session's file is removed at once: nothing waits to be released\n\n"
         "    def close(self) -> None:\n        self._closed = True\n        self._folder.cleanup()"),
    ]),
    "django_db": ("django_cache", [
        (_DOCSTRING, '"""Sessions in Django\'s database session engine on SQLite, used the way a Django view\n'
         'uses them.\n\nWritten against Django 5.2 (``django.contrib.sessions.backends.db``: one row\n'
         'per session in the ``django_session`` table of a SQLite file). Each call is one\n'
         'request: it builds a ``SessionStore`` for'),
        ("import threading\nimport time\n", "import tempfile\nimport threading\nimport time\n"),
        ("if not settings.configured:  # the application's settings: sessions in a local-memory cache",
         '_DATABASE = tempfile.TemporaryDirectory(prefix="sessions-")\n'
         "if not settings.configured:  # the application's settings: sessions in a SQLite database"),
        ('        SESSION_ENGINE="django.contrib.sessions.backends.cache",\n'
         '        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",\n'
         '                            "LOCATION": "sessions", "TIMEOUT": None,\n'
         '                            "OPTIONS": {"MAX_ENTRIES": 10_000_000}}},\n    )\n    django.setup()\n',
         '        SESSION_ENGINE="django.contrib.sessions.backends.db",\n'
         '        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{_DATABASE.name}/db.sqlite3"}},\n'
         '    )\n    django.setup()\n    from django.core.management import call_command\n\n'
         '    call_command("migrate", "sessions", verbosity=0)  # the application\'s deployment creates the table\n'),
        ("from django.contrib.sessions.backends.cache import SessionStore  # noqa: E402",
         "from django.contrib.sessions.backends.db import SessionStore  # noqa: E402"),
        ('cache session engine on LocMemCache"', 'database session engine on SQLite"'),
        ('    """Sessions in Django\'s cache session engine; each call is one request."""',
         '    """Sessions in Django\'s database session engine; each call is one request."""'),
        ("        return 0  # a deleted session leaves the cache at once: nothing waits to be released",
         "        return 0  # a deleted session's row is deleted at once: nothing waits to be released"),
    ]),
}


def on_files(store: str, tree: str = "buggy") -> str:
    """The source of a store in tests/wild_stores, from its store in buggy/wild (or fixed/wild)."""
    origin, edits = EDITS[store]
    source = (ROOT / tree / "wild" / f"{origin}.py").read_text(encoding="utf-8")
    for old, new in edits:
        assert old in source, f"{tree}/wild/{origin}.py no longer has {old!r}"
        source = source.replace(old, new)
    return source
