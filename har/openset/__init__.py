"""None of the known actions: the familiarity score, its held-out threshold, its report."""
