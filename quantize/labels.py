"""The FER2013 classes, in the order of the data set's `emotion` column (0-6)."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
