"""Tests of the DeepFashion2 evaluation suite."""
