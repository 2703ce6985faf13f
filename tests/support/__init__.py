"""Helpers shared by the tests (not tests themselves): no test module imports another test module."""
