"""Names shared by every layer: the splits, in time order, and the three label classes."""

SPLITS = ("train", "val", "test")
NUM_CLASSES = 3  # short, flat, long: labels -1/0/1 become class ids 0/1/2
DEFAULT_DEMO_ROOT = "data/demo"  # generated on first use by the bundled configs
