"""Collections from elsewhere: snapshots (ours or the July-2023 release) and folders of one's own
images. Imports only ``core``."""
