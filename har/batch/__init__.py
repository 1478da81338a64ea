"""Testing many videos at once, and their summary."""
