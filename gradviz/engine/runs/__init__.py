"""Runs on disk and in memory: a capture, the bounded history and keyframes, the run folder's format, reading and writing it (atomic files, bounded archives)."""
