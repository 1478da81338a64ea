"""Training data: index a folder per class, split by group, cache frames and features, augment, montages."""
