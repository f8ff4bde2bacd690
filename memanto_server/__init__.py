"""Memanto server: sessions and memories for AI agents."""
