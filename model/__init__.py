"""Featurizer, autoencoders, training and model artifacts."""
