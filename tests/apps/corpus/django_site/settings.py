"""Settings of the corpus site: production-like (no debug page), so every answer is deterministic."""

SECRET_KEY = "corpus-only-not-a-secret"  # a test site on 127.0.0.1 only
DEBUG = False  # Django's plain "Server Error (500)" page, not the technical one
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.corpus.django_site.urls"
WSGI_APPLICATION = "tests.apps.corpus.django_site.wsgi.application"
INSTALLED_APPS: list[str] = []
# No CSRF middleware: the corpus posts forms and bodies as an API client would, without a token.
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
# The corpus sends a 5 MiB body, read whole with request.body: Django refuses over 2.5 MiB by default.
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
USE_TZ = True
