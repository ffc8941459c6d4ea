"""One module per channel: pure parse/render functions plus a small I/O client each."""
