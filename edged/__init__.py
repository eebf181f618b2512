"""edged: an emotion-sensing daemon for edge devices (camera -> Haar faces -> int8 CNN -> MQTT)."""

__version__ = "0.2.0"
