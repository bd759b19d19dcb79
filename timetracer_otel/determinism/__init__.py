"""What makes a replayed request see what its recording saw: the clock (:mod:`.clock`) and the values the app
generates (:mod:`.generated`: ``uuid4``, ``random``, ``secrets``, ``os.urandom``, ``bson.ObjectId``).

Both are integrations the runtime installs in record and replay mode (``integrations/registry.py``, INBOUND). Like
outbound calls, they find the request they serve through the OpenTelemetry context (:func:`._state.current_state`),
and leave alone what OpenTelemetry and timetracer do themselves (:func:`._state.app_called`). See
``docs/determinism.md``.
"""
