"""pytest plugin entry point (``pytest11``). Its fixtures and options arrive with the pytest integration;
until then it registers nothing, so installing timetracer-otel changes no test run."""
