"""quantize: train, convert to int8 TFLite and gate the accuracy drop of FER2013 emotion CNNs."""

__version__ = "0.2.0"
