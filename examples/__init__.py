"""Complete example apps, each with a README and a test (tests/test_examples.py)."""
