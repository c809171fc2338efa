"""Tools that check the test suite itself (not collected as tests: no ``test_`` prefix)."""
