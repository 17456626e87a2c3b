"""The demo: its ground truth and the runner behind `linegate demo`."""
