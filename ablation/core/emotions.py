"""The paper's six emotion classes, in label order: what every reader maps its dataset's labels onto,
and what reports and the paper's tables order classes by. Kept apart so a report need not import
the data package (and torch with it)."""

EMOTIONS: tuple[str, ...] = ("happy", "anger", "unrest", "wound", "sad", "neutral")
