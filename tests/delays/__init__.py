"""Tests of delays."""
