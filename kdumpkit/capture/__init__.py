"""Capture: page filtering, the write pipeline, save/retention/targets."""
