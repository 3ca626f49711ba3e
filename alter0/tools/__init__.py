"""Development tools (routing replay bench, router fitting, regression sets): never imported by the runtime."""
