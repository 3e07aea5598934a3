"""The built-in synthetic demo corpus: source-filter voices recorded in simulated rooms and channels."""
