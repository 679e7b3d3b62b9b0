"""Results -> pandas -> matplotlib -> a self-contained HTML page and a Markdown summary."""
