"""The Huey engine: the only package that imports huey. ``app.binding_for(cfg)`` builds it from a Config."""
