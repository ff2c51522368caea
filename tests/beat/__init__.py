"""Tests of beat."""
