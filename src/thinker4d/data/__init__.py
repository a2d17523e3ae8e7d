"""Data pipeline stages (4D CoT synthesis) and readers. Import the stage modules directly."""
