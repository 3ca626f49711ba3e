"""The Dramatiq engine (Redis): the only package that imports dramatiq. ``app.binding_for(cfg)`` builds it."""
