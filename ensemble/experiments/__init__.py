"""Experiments: a grid of models x horizons, a leaderboard, and blends of the members."""
