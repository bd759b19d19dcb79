"""Where the test suite finds its database and cache servers (all on 127.0.0.1; scripts/services.sh starts
what is not running and exports TIMETRACER_TEST_MONGO_URI for the MongoDB wire server it starts)."""

from __future__ import annotations

import os

POSTGRES_DSN = os.environ.get("TIMETRACER_TEST_POSTGRES_DSN", "postgresql://root@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TIMETRACER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MONGO_URI = os.environ.get("TIMETRACER_TEST_MONGO_URI", "mongodb://127.0.0.1:27017/?directConnection=true")
