"""Test-wide settings: nothing is ever downloaded (dsrepro.hub is exercised with fakes in test_hub.py)."""
import os

os.environ.setdefault("DSREPRO_FETCH", "0")
