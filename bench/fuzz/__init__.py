"""Mutation fuzzing of unigraph's file readers (see README.md)."""
