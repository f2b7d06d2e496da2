"""Serving early exit over HTTP: the app, request validation, batch schedulers, metrics. No model maths
here: the schedulers call the runners of `sledge.nn`."""
