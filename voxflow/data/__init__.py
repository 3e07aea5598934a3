"""The training data path: manifest tables, tar shards, the streaming training dataset and its sample chain."""
