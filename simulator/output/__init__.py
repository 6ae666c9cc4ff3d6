"""Output formats. Each module renders the run's `result` table and summary one way."""
