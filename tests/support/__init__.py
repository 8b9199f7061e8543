"""Helpers shared by test tiers: a described simulator fleet and misbehaving servers."""
