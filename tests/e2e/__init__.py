"""End-to-end tests against the stack deployed on this machine (one deployment per package)."""
