"""Frame-to-tensor and scores-to-verdict transforms: pure numpy, built once, applied per frame."""
