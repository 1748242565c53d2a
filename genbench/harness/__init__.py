"""The harness: runs (runner), measurements (measure), result records (store), reports."""
